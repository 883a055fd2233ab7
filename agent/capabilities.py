"""Capabilities a user can grant a skill, implemented as sandbox host calls.

- ``llm_tokens``: local LLM generation through an injected ``generate(prompt, max_tokens)``
  callback, charged against a per-run token budget;
- ``docs``: document search through an injected ``search(query, k)`` callback;
- ``files``: granted folders, mounted by the sandbox as WASI preopens (read-only unless
  ``write`` is granted); nothing here, the sandbox does it;
- ``net``: HTTP GET to allow-listed host names only. IP literals are refused, every
  resolved address must be public (no loopback, private, link-local, multicast or reserved
  ranges), the connection goes to the address that was checked (no second DNS lookup to
  rebind), redirects are followed only to the same host (3 at most), and the body is capped.

Callbacks are synchronous: they run on the sandbox's worker thread. A trio caller wraps an
async function with ``trio.from_thread.run`` (see :mod:`bitterbot.agent.skills`).
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urljoin, urlsplit

from bitterbot.agent.sandbox import BudgetExhausted, HostCalls
from bitterbot.protocol.errors import SandboxViolation, SkillError
from bitterbot.protocol.skill_manifest import Permissions

Generate = Callable[[str, int], str]
Search = Callable[[str, int], list[dict[str, Any]]]
Resolver = Callable[[str, int], list[str]]

MAX_REDIRECTS = 3
MAX_SEARCH_K = 20
_DNS_NAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)


class NetViolation(SandboxViolation):
    code = "net_not_allowed"


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise SkillError(f"cannot resolve {host}: {exc.strerror}", code="net_failed") from exc
    return sorted({str(info[4][0]) for info in infos})


@dataclass
class NetPolicy:
    allow_hosts: frozenset[str]
    resolver: Resolver = system_resolver
    allow_private: bool = False  # only for tests against a server on 127.0.0.1
    max_bytes: int = 1024 * 1024
    user_agent: str = "bitterbot-skill/1"

    def check_url(self, url: str) -> tuple[str, str, int, str]:
        """Validate ``url``; return (scheme, host, port, address to connect to)."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise NetViolation(f"malformed URL {url!r}") from exc
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise NetViolation(f"URL scheme {scheme!r} is not allowed (http and https only)")
        if parts.username or parts.password:
            raise NetViolation("URLs with user names or passwords are not allowed")
        host = (parts.hostname or "").rstrip(".").lower()
        if _is_ip_literal(host):
            raise NetViolation(
                f"IP address {host} refused: skills may only reach allow-listed host names",
                code="net_ip_literal",
            )
        if not _DNS_NAME.match(host):
            raise NetViolation(f"host {host!r} is not a valid DNS name")
        if host not in self.allow_hosts:
            raise NetViolation(
                f"host {host} is not in this skill's allow-list "
                f"({', '.join(sorted(self.allow_hosts)) or 'empty'})",
                hint="the skill must declare the host in permissions.net and you must accept it",
            )
        port = port or (443 if scheme == "https" else 80)
        addrs = self.resolver(host, port)
        if not addrs:
            raise SkillError(f"{host} has no addresses", code="net_failed")
        for addr in addrs:
            ip = ipaddress.ip_address(addr.split("%", 1)[0])
            if not self.allow_private and not _is_public(ip):
                raise NetViolation(
                    f"{host} resolves to {ip}, a private or reserved address; refused",
                    code="net_private_address",
                )
        return scheme, host, port, addrs[0]


def _is_ip_literal(host: str) -> bool:
    if not host:
        return False
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        pass
    # inet_aton also accepts 127.1, 0x7f.1 and 2130706433: any all-numeric-ish last label
    last = host.rsplit(".", 1)[-1]
    return bool(re.fullmatch(r"(0x[0-9a-f]*|[0-9]+)", last))


def _is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(ip.is_global and not ip.is_multicast and not ip.is_reserved)


def http_get(policy: NetPolicy, url: str, timeout_s: float) -> bytes:
    """GET ``url`` under ``policy``; returns at most ``policy.max_bytes`` of the body."""
    import httpx

    first_host: str | None = None
    for _hop in range(MAX_REDIRECTS + 1):
        scheme, host, port, addr = policy.check_url(url)
        if first_host is None:
            first_host = host
        elif host != first_host:
            raise NetViolation(
                f"redirect from {first_host} to another host ({host}) refused",
                code="net_redirect",
            )
        parts = urlsplit(url)
        netloc_ip = f"[{addr}]" if ":" in addr else addr
        target = parts._replace(netloc=f"{netloc_ip}:{port}").geturl()
        headers = {"Host": host if parts.port is None else f"{host}:{port}"}
        headers["User-Agent"] = policy.user_agent
        try:
            with httpx.Client(timeout=max(0.01, timeout_s), follow_redirects=False) as client:
                with client.stream(
                    "GET", target, headers=headers, extensions={"sni_hostname": host}
                ) as resp:
                    if resp.is_redirect:
                        location = resp.headers.get("location", "")
                        url = urljoin(url, location)
                        continue
                    if resp.status_code >= 400:
                        raise SkillError(
                            f"{host} answered HTTP {resp.status_code}", code="net_failed"
                        )
                    body = bytearray()
                    for chunk in resp.iter_bytes():
                        body.extend(chunk)
                        if len(body) >= policy.max_bytes:
                            break
                    return bytes(body[: policy.max_bytes])
        except httpx.HTTPError as exc:
            raise SkillError(f"fetching {host} failed: {exc}", code="net_failed") from exc
    raise SkillError(f"more than {MAX_REDIRECTS} redirects", code="net_failed")


@dataclass
class Capabilities:
    """The capabilities of one run: what was granted, and the callbacks behind them."""

    granted: Permissions
    generate: Generate | None = None
    search: Search | None = None
    net: NetPolicy | None = None
    tokens_used: int = 0
    calls: list[str] = field(default_factory=list)

    def _llm(self, prompt: str, max_tokens: int, *, timeout_s: float) -> bytes:
        self.calls.append("llm_generate")
        left = self.granted.llm_tokens - self.tokens_used
        if left <= 0:
            raise BudgetExhausted(f"the run's budget of {self.granted.llm_tokens} tokens is spent")
        if self.generate is None:
            raise SkillError("no local model is loaded", code="model_unavailable")
        grant = max(1, min(max_tokens, left))
        self.tokens_used += grant  # charged up front: the callback may not report usage
        return self.generate(prompt, grant).encode("utf-8")

    def _search(self, query: str, k: int, *, timeout_s: float) -> bytes:
        self.calls.append("doc_search")
        if self.search is None:
            raise SkillError("document search is not available", code="docs_unavailable")
        hits = self.search(query, max(1, min(k, MAX_SEARCH_K)))
        return json.dumps(hits, ensure_ascii=False).encode("utf-8")

    def _http(self, url: str, *, timeout_s: float) -> bytes:
        self.calls.append("http_get")
        assert self.net is not None
        return http_get(self.net, url, timeout_s)

    def host_calls(self) -> HostCalls:
        """Only what is granted becomes a host function; the rest stays unlinked."""
        granted_hosts = frozenset(self.granted.net)
        if self.net is None:
            self.net = NetPolicy(granted_hosts)
        else:  # never wider than the grant, whatever policy was injected
            self.net = replace(self.net, allow_hosts=self.net.allow_hosts & granted_hosts)
        return HostCalls(
            llm_generate=self._llm if self.granted.llm_tokens > 0 else None,
            doc_search=self._search if self.granted.docs else None,
            http_get=self._http if self.granted.net else None,
        )
