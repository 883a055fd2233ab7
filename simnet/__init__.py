"""simnet: many real Bitterbot nodes on loopback, with faults and adversaries."""
