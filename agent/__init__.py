"""The local agent runtime: model backends, router, privacy gate, skill sandbox, documents.

Usable without a network; imports only :mod:`bitterbot.protocol` of ours.
"""
