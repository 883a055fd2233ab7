"""Payments on a node: channels, vouchers, licenses, buyer and seller, settlement backends."""
