"""The ``bitterbot`` command line: one module per noun; each command parses, calls, prints."""
