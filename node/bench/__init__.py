"""Benchmark commands (``bitterbot bench ...``): each prints numbers, JSON with ``--json``."""
