"""The embedded HTTP endpoint: ``/metrics`` (Prometheus or OpenMetrics) and ``/slow-steps``.

prometheus_client's own WSGI app serves ``/metrics`` and chooses the format
from the scraper's ``Accept`` header, so no exposition text is written here.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler

from otel_ml.exporter._slow_steps import SlowStepBuffer

_LOG = logging.getLogger(__name__)
_StartResponse = Callable[..., Any]


def make_app(registry: CollectorRegistry, slow_steps: SlowStepBuffer) -> Callable[..., Iterable[bytes]]:
    """A WSGI app routing ``/metrics`` to prometheus_client and ``/slow-steps`` to the buffer."""
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: _StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]
        if path in ("/slow-steps", "/slow-steps/"):
            return _slow_steps(slow_steps, environ, start_response)
        if path == "/":
            body = b"otel_ml endpoint: /metrics (Prometheus/OpenMetrics), /slow-steps?trace_id=<hex> (JSON)\n"
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found: try /metrics or /slow-steps\n"]

    return app


def _slow_steps(buffer: SlowStepBuffer, environ: dict[str, Any], start_response: _StartResponse) -> Iterable[bytes]:
    query = parse_qs(environ.get("QUERY_STRING", ""))
    trace_id = (query.get("trace_id") or [None])[0]
    limit_raw = (query.get("limit") or [None])[0]
    if trace_id is not None and (len(trace_id) != 32 or any(c not in "0123456789abcdefABCDEF" for c in trace_id)):
        return _json(start_response, "400 Bad Request", {"error": "trace_id must be 32 hexadecimal characters"})
    limit = None
    if limit_raw is not None:
        if not limit_raw.isdigit() or int(limit_raw) < 1:
            return _json(start_response, "400 Bad Request", {"error": "limit must be a whole number >= 1"})
        limit = int(limit_raw)
    spans = buffer.spans(trace_id=trace_id, limit=limit)
    return _json(start_response, "200 OK", {"capacity": buffer.capacity, "slow_steps": spans})


def _json(start_response: _StartResponse, status: str, payload: dict[str, Any]) -> Iterable[bytes]:
    body = json.dumps(payload, default=str).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class EmbeddedServer:
    """The endpoint's server thread; ``start`` never raises into the program."""

    def __init__(self, host: str, port: int, app: Callable[..., Iterable[bytes]]) -> None:
        self.host = host
        self.port = port
        self._app = app
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Bind and serve in a daemon thread; a taken port is one clear log line, not an error."""
        try:
            server = make_server(self.host, self.port, self._app, ThreadingWSGIServer, handler_class=_SilentHandler)
        except OSError as exc:
            _LOG.error(
                "otel_ml: cannot serve /metrics on %s:%s (%s). Training continues without the embedded "
                "endpoint; choose another port with OTEL_EXPORTER_PROMETHEUS_PORT.",
                self.host,
                self.port,
                exc.strerror or exc,
            )
            return False
        self._server = server
        self.port = server.server_port
        self._thread = threading.Thread(target=server.serve_forever, name="otel_ml-metrics", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def running(self) -> bool:
        """Whether the server is bound and serving."""
        return self._server is not None

    @property
    def url(self) -> str:
        """The ``/metrics`` URL, with the port actually bound."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"
