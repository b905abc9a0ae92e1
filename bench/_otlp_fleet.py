"""A fleet of simulated training workers that send exactly what a real instrumented worker sends.

Why not N SDKs: one OpenTelemetry SDK per simulated worker costs tens of MiB
and real CPU in the *generator*, which on a 2-core machine competes with the
collector being measured. Instead a real worker is recorded once and replayed:

1. :func:`capture` runs ``examples/keras_train.py`` under
   ``opentelemetry-instrument`` (a real Keras fit, otel_ml's Keras, process and
   GPU instrumentation, the latter on the fake NVML of ``tests/fake_nvml.py``
   with ``gpus`` devices), exporting OTLP/HTTP protobuf to a local recorder.
   Its final metrics request (cumulative: every series the worker has, with
   histogram exemplars) and its slow-step span request are the templates.
2. :class:`Template` finds, in those bytes, every timestamp (fixed64 fields),
   every trace and span id of the exemplars and spans, the fixed-width
   ``service.instance.id`` placeholder, and one gauge value used as a marker
   (the learning rate, which carries the send time so the end-to-end delay
   can be read back from Prometheus).
3. :class:`Fleet` gives each simulated worker its own copy with its own
   ``service.instance.id`` and, per export, patches timestamps, marker and
   trace ids in place (``struct.pack_into``; no protobuf re-encoding), then
   POSTs it over a keep-alive HTTP connection, on the worker's own schedule.

What is not replayed: counter and histogram values stay those of the capture
(a cumulative series that stops growing is still a valid series; the
collector's cost does not depend on the values), and ``ml.worker.index`` is
the capture's for every worker (identity comes from ``service.instance.id``).
"""

from __future__ import annotations

import heapq
import http.client
import os
import random
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER = "fleet-worker-00000000"  # fixed width: patched per worker without re-encoding
MARKER_METRIC = "ml.train.learning_rate"
SLOW_STEP = 20

_FAKE_NVML = """\
import sys
from tests import fake_nvml as _nvml
_nvml.reset([_nvml.FakeGpu(f"GPU-{{i:08d}}-1111-2222-3333-444444444444") for i in range({gpus})])
sys.modules[__name__] = _nvml
"""


@dataclass
class Capture:
    metrics: bytes
    traces: bytes


def capture(gpus: int = 8, workdir: Path | None = None, timeout: float = 300.0) -> Capture:
    """Record one real instrumented Keras worker's final OTLP metrics request and its slow-step spans."""
    workdir = Path(workdir or tempfile.mkdtemp(prefix="otlp-fleet-"))
    (workdir / "fleet_fake_nvml.py").write_text(_FAKE_NVML.format(gpus=gpus))
    bodies: dict[str, list[bytes]] = {"/v1/metrics": [], "/v1/traces": []}

    class Recorder(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            bodies.setdefault(self.path, []).append(body)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(workdir), str(ROOT)]),
            "OTEL_ML_GPU_NVML_MODULE": "fleet_fake_nvml",
            "OTEL_SERVICE_NAME": "trainer",
            "OTEL_RESOURCE_ATTRIBUTES": f"service.instance.id={PLACEHOLDER}",
            "OTEL_ML_RUN_NAME": "fleet",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
            "OTEL_METRIC_EXPORT_INTERVAL": "1000",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "TF_CONFIG": '{"task": {"type": "worker", "index": 0}}',
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
    )
    env.pop("CUDA_VISIBLE_DEVICES", None)  # otel_ml's GPU poller honours it: all 8 (fake) devices visible
    instrument = str(Path(sys.executable).parent / "opentelemetry-instrument")
    args = ["--epochs", "2", "--samples", "512", "--batch-size", "32", "--slow-step", str(SLOW_STEP)]
    args += ["--slow-seconds", "0.5", "--hold", "2.5"]  # hold: the GPU poller's periodic series are in an export
    try:
        done = subprocess.run(
            [instrument, sys.executable, str(ROOT / "examples" / "keras_train.py"), *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            timeout=timeout,
        )
    finally:
        server.shutdown()
        server.server_close()
    if done.returncode != 0 or not bodies["/v1/metrics"] or not bodies["/v1/traces"]:
        raise RuntimeError(f"capture failed (rc {done.returncode}): {done.stderr.decode(errors='replace')[-3000:]}")
    # Cumulative requests: the latest hold every series; exemplars are those of their own interval, so
    # the template is the largest request that carries the slow step's exemplar.
    with_exemplars = [b for b in bodies["/v1/metrics"] if _has_exemplar(b)]
    metrics = max(with_exemplars or bodies["/v1/metrics"], key=len)
    slow = [b for b in bodies["/v1/traces"] if _has_slow_step(b)]
    return Capture(metrics=metrics, traces=slow[0] if slow else bodies["/v1/traces"][0])


def _has_exemplar(body: bytes) -> bool:
    request = ExportMetricsServiceRequest.FromString(body)
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.WhichOneof("data") == "histogram" and any(p.exemplars for p in metric.histogram.data_points):
                    return True
    return False


def _has_slow_step(body: bytes) -> bool:
    request = ExportTraceServiceRequest.FromString(body)
    return any(
        span.name.endswith("train_step") for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans
    )


def _offsets(data: bytes, needle: bytes) -> list[int]:
    found, start = [], 0
    while (at := data.find(needle, start)) >= 0:
        found.append(at)
        start = at + 1
    return found


def _u64(value: int) -> bytes:
    return struct.pack("<Q", value)


@dataclass
class Template:
    """A captured request and where, in its bytes, each patchable value lies."""

    body: bytes
    times: list[tuple[int, int]] = field(default_factory=list)  # (offset, captured ns): shifted per export
    starts: list[tuple[int, int]] = field(default_factory=list)  # (offset, captured ns): shifted per worker
    trace_ids: list[int] = field(default_factory=list)  # offsets of 16-byte trace ids
    marker: int | None = None  # offset of the marker gauge's double value
    points: int = 0
    spans: int = 0
    series_names: set[str] = field(default_factory=set)

    @classmethod
    def metrics(cls, body: bytes) -> Template:
        request = ExportMetricsServiceRequest.FromString(body)
        times: set[int] = set()
        starts: set[int] = set()
        traces: set[bytes] = set()
        marker_value: float | None = None
        template = cls(body)
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    template.series_names.add(metric.name)
                    kind = metric.WhichOneof("data")
                    for point in getattr(metric, kind).data_points:
                        template.points += 1
                        times.add(point.time_unix_nano)
                        if point.start_time_unix_nano:
                            starts.add(point.start_time_unix_nano)
                        for exemplar in point.exemplars:
                            times.add(exemplar.time_unix_nano)
                            traces.add(exemplar.trace_id)
                        if metric.name == MARKER_METRIC:
                            marker_value = point.as_double
        starts -= times
        template.times = [(at, t) for t in times for at in _offsets(body, _u64(t))]
        template.starts = [(at, t) for t in starts for at in _offsets(body, _u64(t))]
        template.trace_ids = [at for tid in traces if tid for at in _offsets(body, tid)]
        if marker_value is not None:
            # NumberDataPoint.as_double: field 4, wire type 1 (fixed64) -> tag 0x21.
            found = _offsets(body, b"\x21" + struct.pack("<d", marker_value))
            if len(found) == 1:
                template.marker = found[0] + 1
        return template

    @classmethod
    def traces(cls, body: bytes) -> Template:
        request = ExportTraceServiceRequest.FromString(body)
        times: set[int] = set()
        traces: set[bytes] = set()
        template = cls(body)
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    template.spans += 1
                    times.update((span.start_time_unix_nano, span.end_time_unix_nano))
                    traces.add(span.trace_id)
        template.times = [(at, t) for t in times for at in _offsets(body, _u64(t))]
        template.trace_ids = [at for tid in traces for at in _offsets(body, tid)]
        return template

    def for_worker(self, worker: str) -> bytearray:
        """This template's bytes with ``service.instance.id`` = ``worker`` (at most the placeholder's width)."""
        name = worker.ljust(len(PLACEHOLDER), "-").encode()
        assert len(name) == len(PLACEHOLDER), worker
        return bytearray(self.body.replace(PLACEHOLDER.encode(), name))

    def patch(self, buf: bytearray, shift_ns: int, start_shift_ns: int, trace_id: bytes, marker: float) -> None:
        """Move the timestamps by ``shift_ns``, set the trace id of every exemplar/span and the marker."""
        for at, t in self.times:
            struct.pack_into("<Q", buf, at, t + shift_ns)
        for at, t in self.starts:
            struct.pack_into("<Q", buf, at, t + start_shift_ns)
        for at in self.trace_ids:
            buf[at : at + 16] = trace_id
        if self.marker is not None:
            struct.pack_into("<d", buf, self.marker, marker)


def trace_id(worker: int, export: int) -> bytes:
    """The trace id a worker's ``export``-th request carries on its exemplars and slow-step span."""
    return b"\x0f\x1e\x37\x00" + struct.pack(">IQ", worker, export)


def instance_id(worker: int) -> str:
    return f"fleet-w{worker:06d}"


@dataclass
class Stats:
    sent_requests: int = 0
    sent_points: int = 0
    failed_requests: int = 0
    failed_points: int = 0
    send_seconds: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Fleet:
    """``workers`` simulated workers exporting every ``interval`` s to an OTLP/HTTP endpoint.

    Each worker's first export happens at a random offset within the interval
    (real workers are not synchronised) unless ``burst``: then all start at
    once. Export ``k`` of worker ``w`` carries wall time ``t0 + offset + k *
    interval`` in its timestamps and marker, and trace id ``trace_id(w, k)``.
    A failed request is counted, not retried (the SDK would retry a few times,
    then drop).
    """

    def __init__(
        self,
        metrics: Template,
        traces: Template | None,
        workers: int,
        endpoint: str,
        interval: float = 10.0,
        senders: int = 4,
        burst: bool = False,
        seed: int = 0,
        first: int = 0,
    ) -> None:
        self.metrics, self.traces = metrics, traces
        self.workers, self.interval, self.burst = workers, interval, burst
        host, port = endpoint.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.stats = Stats()
        self.stop_event = threading.Event()
        rng = random.Random(seed)
        self.capture_ns = max(t for _, t in metrics.times)
        self.ids = list(range(first, first + workers))
        self.offsets = {w: 0.0 if burst else rng.uniform(0, interval) for w in self.ids}
        self.exports: dict[int, int] = dict.fromkeys(self.ids, 0)
        self.senders = [
            threading.Thread(target=self._send_loop, args=(i, senders), daemon=True) for i in range(senders)
        ]
        self.t0 = 0.0

    def start(self) -> None:
        self.t0 = time.time()
        for thread in self.senders:
            thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.senders:
            thread.join(timeout=30)

    def _send_loop(self, index: int, count: int) -> None:
        mine = [w for w in self.ids if w % count == index]
        bufs = {w: self.metrics.for_worker(instance_id(w)) for w in mine}
        tbufs = {w: self.traces.for_worker(instance_id(w)) for w in mine} if self.traces else {}
        start_shift = {w: int((self.t0 + self.offsets[w]) * 1e9) - self.capture_ns - 10**9 for w in mine}
        heap = [(self.t0 + self.offsets[w], w) for w in mine]
        heapq.heapify(heap)
        conn = http.client.HTTPConnection(self.host, self.port, timeout=15)
        while heap and not self.stop_event.is_set():
            due, w = heapq.heappop(heap)
            delay = due - time.time()
            if delay > 0 and self.stop_event.wait(delay):
                break
            k = self.exports[w]
            now = time.time()
            tid = trace_id(w, k)
            shift = int(now * 1e9) - self.capture_ns
            self.metrics.patch(bufs[w], shift, start_shift[w], tid, now)
            ok = self._post(conn, "/v1/metrics", bufs[w])
            if ok and self.traces is not None:
                self.traces.patch(tbufs[w], shift, 0, tid, 0.0)
                self._post(conn, "/v1/traces", tbufs[w])
            elapsed = time.time() - now
            with self.stats.lock:
                self.stats.send_seconds.append(elapsed)
                if ok:
                    self.stats.sent_requests += 1
                    self.stats.sent_points += self.metrics.points
                else:
                    self.stats.failed_requests += 1
                    self.stats.failed_points += self.metrics.points
            self.exports[w] = k + 1
            heapq.heappush(heap, (due + self.interval, w))
        conn.close()

    def _post(self, conn: http.client.HTTPConnection, path: str, body: bytearray) -> bool:
        for attempt in range(2):  # one reconnect: a collector restart closes keep-alive connections
            try:
                conn.request("POST", path, body=bytes(body), headers={"Content-Type": "application/x-protobuf"})
                response = conn.getresponse()
                response.read()
                return response.status == 200
            except (OSError, http.client.HTTPException):
                conn.close()
                if attempt:
                    return False
        return False
