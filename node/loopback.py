"""Is a ``Host`` header (or listen address) this machine? The DNS-rebinding defence of the
local API and the metrics endpoint."""

from __future__ import annotations

LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}


def host_is_loopback(host_header: str) -> bool:
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[: host.find("]") + 1] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host in LOOPBACK_HOSTS or host.startswith("127.")
