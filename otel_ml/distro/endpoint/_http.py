"""The little HTTP/1.1 the embedded endpoint speaks: a request head in, one response out.

Scrapers send a GET with a few headers and read until the connection closes
or ``Content-Length`` bytes arrived; nothing more is needed, and anything the
head parser does not recognise is answered 400 by the server.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import unquote

# Names that mean this machine wherever they are used: a page cannot rebind them to another address.
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def environ_from(head: bytes, host: str, port: int) -> dict[str, Any] | None:
    """A minimal WSGI environ from a request head, or None when it is not HTTP."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None
    method, target, protocol = parts
    path, _, query = target.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": unquote(path, "latin-1"),
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": protocol,
        "SERVER_NAME": host,
        "SERVER_PORT": str(port),
        "wsgi.url_scheme": "http",
    }
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            environ["HTTP_" + name.strip().upper().replace("-", "_")] = value.strip()
    return environ


def host_allowed(header: str | None, allowed: frozenset[str]) -> bool:
    """Whether a request's ``Host`` names this endpoint: an allowed name, a loopback name or an IP literal.

    DNS rebinding points a name the attacker owns at 127.0.0.1, so a page in
    the user's browser sends ``Host: evil.example``: refusing names other than
    these keeps that page from reading ``/metrics`` and ``/slow-steps``. A
    request without ``Host`` (HTTP/1.0 tools) is no browser's and is answered.
    """
    if header is None or "*" in allowed:
        return True
    name = host_name(header)
    if name is None:
        return False
    if name in allowed or name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_name(host: str) -> str | None:
    """The name in a ``Host`` header or an allowed-host entry: lower case, without port, brackets or final dot.

    Example:
        >>> host_name("Trainer.ML.svc.:9464"), host_name("[::1]:9464"), host_name("::1"), host_name("[::1")
        ('trainer.ml.svc', '::1', '::1', None)
    """
    host = host.strip().lower()
    if host.startswith("["):  # [v6]:port
        end = host.find("]")
        if end < 0:
            return None
        name = host[1:end]
    else:
        name = host.rpartition(":")[0] if host.count(":") == 1 else host
    return name.rstrip(".")


def response(status: str, headers: list[tuple[str, str]], body: bytes, head: bool = False) -> bytes:
    """The bytes of one response; ``head`` leaves the body out (``Content-Length`` still says its length)."""
    lines = [f"HTTP/1.1 {status}"]
    lines += [f"{name}: {value}" for name, value in headers if name.lower() not in ("content-length", "connection")]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + (b"" if head else body)
