"""The little HTTP/1.1 the embedded endpoint speaks: a request head in, one response out.

Scrapers send a GET with a few headers and read until the connection closes
or ``Content-Length`` bytes arrived; nothing more is needed, and anything the
head parser does not recognise is answered 400 by the server.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote


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


def response(status: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    lines = [f"HTTP/1.1 {status}"]
    lines += [f"{name}: {value}" for name, value in headers if name.lower() not in ("content-length", "connection")]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + body
