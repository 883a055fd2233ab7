"""The libp2p side of a node: host, DHT, gossip, peers, streams and frames."""
