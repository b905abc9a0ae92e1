"""A minimal OTLP/HTTP metrics sink on 127.0.0.1 that can play a collector that is down: what it was given, decoded.

It answers ``POST /v1/metrics`` as the collector does (an empty
``ExportMetricsServiceResponse``), or 503 while ``down`` is set (a collector
that is restarting): the exporter then reports the export as failed.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)


def _value(point: Any) -> Any:
    return point.as_double if point.WhichOneof("value") == "as_double" else point.as_int


class OtlpReceiver:
    """Decoded metric points, one list per accepted request."""

    def __init__(self) -> None:
        self.down = False
        self.requests: list[list[tuple[str, dict[str, Any], Any]]] = []
        self.refused = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if receiver.down:
                    receiver.refused += 1
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.requests.append(receiver.decode(body))
                answer = ExportMetricsServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1/metrics"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @staticmethod
    def decode(body: bytes) -> list[tuple[str, dict[str, Any], Any]]:
        """(metric name, point attributes, value) of every sum and gauge point of one request."""
        request = ExportMetricsServiceRequest.FromString(body)
        points = []
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    data = metric.sum if metric.WhichOneof("data") == "sum" else metric.gauge
                    for point in data.data_points:
                        attrs = {kv.key: kv.value.string_value for kv in point.attributes}
                        points.append((metric.name, attrs, _value(point)))
        return points

    def last(self, name: str) -> dict[tuple[tuple[str, Any], ...], Any]:
        """The latest value of each series of ``name``, keyed by its sorted attributes."""
        found: dict[tuple[tuple[str, Any], ...], Any] = {}
        for request in self.requests:
            for metric, attrs, value in request:
                if metric == name:
                    found[tuple(sorted(attrs.items()))] = value
        return found

    @property
    def endpoint(self) -> str:
        """The base URL, for ``OTEL_EXPORTER_OTLP_ENDPOINT``."""
        return self.url[: -len("/v1/metrics")]

    def sums(self, name: str) -> list[Any]:
        """Every value of ``name``'s points that arrived, in order of arrival."""
        return [value for request in list(self.requests) for metric, _, value in request if metric == name]

    def env(self) -> dict[str, str]:
        """The environment that points a process's metrics here (and nowhere else)."""
        return {
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": self.url,
            "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT": "1",
            "OTEL_METRIC_EXPORT_INTERVAL": "600000",
        }

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """A receiver on a free loopback port, stopped when the block ends."""
    receiver = OtlpReceiver()
    try:
        yield receiver
    finally:
        receiver.close()
