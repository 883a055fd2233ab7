"""The Bitterbot node: libp2p host, stores, local API, metrics and CLI."""
