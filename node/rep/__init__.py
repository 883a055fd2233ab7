"""Reputation on a node: attestation ledger, gossip, trust scoring, the install gate."""
