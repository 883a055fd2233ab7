"""The local HTTP API: the Starlette app, one route module per subsystem, and its client."""
