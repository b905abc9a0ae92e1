"""The embedded endpoint's routes: ``/metrics`` (Prometheus or OpenMetrics), ``/slow-steps`` and the live page.

prometheus_client's own WSGI app serves ``/metrics`` and chooses the format
from the scraper's ``Accept`` header, so no exposition text is written here.
Every query value is checked before use: a bad one is a 400 that says what is
accepted, never a traceback on the training program's stderr.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry, make_wsgi_app

from otel_ml.distro.endpoint import _page
from otel_ml.distro.endpoint._history import MetricHistory
from otel_ml.distro.endpoint._slow_steps import SlowStepBuffer

_StartResponse = Callable[..., Any]
_LIMIT_DIGITS = 9
_LIMIT_ERROR = "limit must be a whole number from 1 to 999999999 (ASCII digits)"


def make_app(
    registry: CollectorRegistry, slow_steps: SlowStepBuffer, history: MetricHistory | None = None
) -> Callable[..., Iterable[bytes]]:
    """A WSGI app routing ``/metrics`` to prometheus_client, ``/slow-steps`` to the buffer, the page to ``_page``."""
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: _StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]
        if path in ("/slow-steps", "/slow-steps/"):
            return _slow_steps(slow_steps, environ, start_response)
        if history is not None and _page.handles(path):
            return _page.serve(history, slow_steps, environ, start_response)
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
        # ASCII digits only: str.isdigit() accepts "²", which int() then rejects.
        if not (limit_raw.isascii() and limit_raw.isdigit() and len(limit_raw) <= _LIMIT_DIGITS) or int(limit_raw) < 1:
            return _json(start_response, "400 Bad Request", {"error": _LIMIT_ERROR})
        limit = int(limit_raw)
    spans = buffer.spans(trace_id=trace_id, limit=limit)
    return _json(start_response, "200 OK", {"capacity": buffer.capacity, "slow_steps": spans})


def _json(start_response: _StartResponse, status: str, payload: dict[str, Any]) -> Iterable[bytes]:
    body = json.dumps(payload, default=str).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
