"""Sans-IO core of Bitterbot: wire formats, canonical codec, signatures, state machines.

Nothing here opens a socket, touches the disk or reads the clock; callers pass time in.
"""
