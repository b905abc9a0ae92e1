"""The gateway benchmark's load generator (bench/_otlp_fleet.py) sends what a real worker sends.

The generator replays one recorded OTLP export per simulated worker, patching
bytes in place. These tests record a real SDK export (otel_ml's GPU
instrumentation on the fake NVML with 8 GPUs, a step-duration histogram with
an exemplar from a sampled span, the learning-rate gauge), replay it, and
decode what was sent: every point, attribute and series of the recording is
there, unchanged except the worker identity, the timestamps (shifted by
exactly the requested amount), the exemplar trace ids and the marker value.
Plus the fleet schedule over real HTTP, and the persistent-queue overlay.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from otel_ml._core import semconv as sc
from otel_ml.gpu import GpuInstrumentor
from tests import fake_nvml
from tests._collector_procs import COLLECTOR_DIR, Collector, require_collector
from tests._net import wait_for
from tests._prometheus import Prometheus

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import _otlp_fleet as fleet

GPUS = 8


def _points(body: bytes) -> Iterator[tuple[str, str, Any]]:
    request = ExportMetricsServiceRequest.FromString(body)
    for rm in request.resource_metrics:
        resource = {a.key: a.value.string_value for a in rm.resource.attributes}
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in getattr(metric, metric.WhichOneof("data")).data_points:
                    yield resource["service.instance.id"], metric.name, point


def _attrs(point: Any) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((a.key, str(a.value)) for a in point.attributes))


@pytest.fixture(scope="module")
def recorded(monkeypatch_module: pytest.MonkeyPatch) -> bytes:
    """One real SDK export of a worker with 8 GPUs, a sampled slow step and a learning rate."""
    monkeypatch_module.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    fake_nvml.reset([fake_nvml.FakeGpu(f"GPU-{i:08d}-1111-2222-3333-444444444444") for i in range(GPUS)])
    reader = InMemoryMetricReader()
    resource = Resource.create({"service.name": "trainer", "service.instance.id": fleet.PLACEHOLDER})
    provider = MeterProvider(metric_readers=[reader], resource=resource)
    tracer = TracerProvider(resource=resource).get_tracer("test")
    try:
        GpuInstrumentor().instrument(meter_provider=provider, nvml=fake_nvml)
        meter = provider.get_meter("otel_ml.keras")
        steps = meter.create_histogram(sc.METRIC_TRAIN_STEP_DURATION, unit="s")
        rate = meter.create_gauge(sc.METRIC_TRAIN_LEARNING_RATE)
        with tracer.start_as_current_span(sc.SPAN_KERAS_TRAIN_STEP):
            steps.record(0.5)  # sampled span: the exemplar carries its trace id
        steps.record(0.01)
        rate.set(0.001)
        data = reader.get_metrics_data()
    finally:
        GpuInstrumentor().uninstrument()
        provider.shutdown()
        fake_nvml.reset(fake_nvml.default_gpus())
    assert data is not None
    return bytes(encode_metrics(data).SerializeToString())


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_replayed_export_is_the_recorded_one_with_its_own_identity_times_and_trace(recorded: bytes) -> None:
    template = fleet.Template.metrics(recorded)
    original = list(_points(recorded))
    assert template.points == len(original)
    assert {n for _, n, _ in original} >= {sc.METRIC_HW_POWER, sc.METRIC_HW_GPU_UTILIZATION, sc.METRIC_HW_ENERGY}
    assert len({dict(_attrs(p)).get("hw.id") for _, n, p in original if n == sc.METRIC_HW_POWER}) == GPUS
    assert template.marker is not None and template.trace_ids

    buf = template.for_worker(fleet.instance_id(7))
    shift, start_shift, tid = 3_600 * 10**9 + 123, 60 * 10**9 + 7, fleet.trace_id(7, 3)
    template.patch(buf, shift, start_shift, tid, 1234.5)
    replayed = list(_points(bytes(buf)))

    assert len(replayed) == len(original)
    for (wid, name, point), (_, name0, point0) in zip(replayed, original, strict=True):
        assert wid == fleet.instance_id(7).ljust(len(fleet.PLACEHOLDER), "-")
        assert (name, _attrs(point)) == (name0, _attrs(point0))
        assert point.time_unix_nano == point0.time_unix_nano + shift
        if point0.start_time_unix_nano:
            assert point.start_time_unix_nano == point0.start_time_unix_nano + start_shift
        if name == sc.METRIC_TRAIN_LEARNING_RATE:
            assert point.as_double == 1234.5
        elif hasattr(point0, "as_double") and point0.WhichOneof("value") == "as_double":
            assert point.as_double == point0.as_double
        if name == sc.METRIC_TRAIN_STEP_DURATION:
            assert (point.count, list(point.bucket_counts)) == (point0.count, list(point0.bucket_counts))
            assert [e.trace_id for e in point.exemplars] == [tid]
            assert point.exemplars[0].time_unix_nano == point0.exemplars[0].time_unix_nano + shift
            assert point.exemplars[0].as_double == 0.5


def test_fleet_sends_every_worker_on_its_own_schedule_over_http(recorded: bytes) -> None:
    received: list[bytes] = []

    class Recorder(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    template = fleet.Template.metrics(recorded)
    sender = fleet.Fleet(template, None, workers=3, endpoint=f"127.0.0.1:{server.server_address[1]}", interval=0.4)
    try:
        sender.start()
        time.sleep(1.5)
        sender.stop()
    finally:
        server.shutdown()
        server.server_close()
    assert sender.stats.sent_requests == len(received) >= 9 and sender.stats.failed_requests == 0
    by_worker: dict[str, list[tuple[int, bytes]]] = {}
    for body in received:
        points = list(_points(body))
        (wid,) = {w for w, _, _ in points}
        rate = next(p for _, n, p in points if n == sc.METRIC_TRAIN_LEARNING_RATE)
        steps = next(p for _, n, p in points if n == sc.METRIC_TRAIN_STEP_DURATION)
        assert abs(rate.as_double - rate.time_unix_nano / 1e9) < 0.01  # the marker is the send time
        assert abs(rate.time_unix_nano / 1e9 - time.time()) < 10
        by_worker.setdefault(wid, []).append((rate.time_unix_nano, steps.exemplars[0].trace_id))
    assert sorted(by_worker) == [fleet.instance_id(w).ljust(len(fleet.PLACEHOLDER), "-") for w in range(3)]
    for w, sends in enumerate(by_worker[fleet.instance_id(w).ljust(len(fleet.PLACEHOLDER), "-")] for w in range(3)):
        times = [t for t, _ in sends]
        assert times == sorted(times) and len(set(times)) == len(times)
        assert [tid for _, tid in sends] == [fleet.trace_id(w, k) for k in range(len(sends))]


def test_persistent_queue_overlay_validates_on_top_of_the_agent() -> None:
    binary = require_collector()
    configs = [
        "--config",
        str(COLLECTOR_DIR / "agent.yaml"),
        "--config",
        str(COLLECTOR_DIR / "agent-persistent-queue.yaml"),
    ]
    proc = subprocess.run([str(binary), "validate", *configs], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr


def test_remote_write_gateway_spools_on_disk_in_order_and_serves_its_own_metrics() -> None:
    import yaml

    config = yaml.safe_load((COLLECTOR_DIR / "gateway-remotewrite.yaml").read_text())
    spool = config["exporters"]["otlp_http/spool"]
    queue = spool["sending_queue"]
    assert queue["storage"] == "file_storage/spool" and config["service"]["extensions"] == ["file_storage/spool"]
    # One writer by default: in order, as Prometheus without an out-of-order window requires.
    assert queue["num_consumers"] == "${env:OTELCOL_SPOOL_CONSUMERS:-1}"
    assert queue["sizer"] == "items" and "batch" in queue  # batched as it is read, after it is on disk
    assert spool["retry_on_failure"]["max_elapsed_time"] == "0s"  # held while the receiver is down
    writer = config["exporters"]["prometheus_remote_write/spooled"]
    assert writer["remote_write_queue"] == {"enabled": False}  # a failed write goes back to the spool
    pipelines = config["service"]["pipelines"]
    # No batch processor before the spool: an agent is answered once its points are on disk.
    assert pipelines["metrics"]["processors"] == ["memory_limiter", "transform/prometheus"]
    assert pipelines["metrics"]["exporters"] == ["otlp_http/spool"]
    assert pipelines["metrics/write"] == {"receivers": ["otlp/spool"], "exporters": ["prometheus_remote_write/spooled"]}
    for name in ("gateway.yaml", "gateway-remotewrite.yaml"):
        telemetry = yaml.safe_load((COLLECTOR_DIR / name).read_text())["service"]["telemetry"]["metrics"]
        assert telemetry["level"] == "normal"
        pull = telemetry["readers"][0]["pull"]["exporter"]["prometheus"]
        assert pull["host"] == "${env:OTELCOL_TELEMETRY_HOST:-127.0.0.1}"


# Prometheus as a remote-write receiver that accepts late samples: after a SIGKILL the gateway's
# spool sends the batch it was writing again, after the ones queued behind it (docs/collector.md).
RECEIVER = "global:\n  scrape_interval: 1m\nstorage:\n  tsdb:\n    out_of_order_time_window: 30m\n"
MARKER = "ml_train_learning_rate"


def test_remote_write_gateway_loses_nothing_it_acknowledged_across_an_outage_and_a_sigkill(
    recorded: bytes, tmp_path: Path
) -> None:
    """Workers -> gateway-remotewrite.yaml -> Prometheus; Prometheus down, the gateway SIGKILLed and restarted
    meanwhile, then Prometheus back: every export the gateway acknowledged is stored (a sample sent twice is stored
    once by Prometheus, so repeats are the bench's counting receiver's to find: bench/rwsink)."""
    require_collector()
    receiver = Prometheus(tmp_path, RECEIVER, "--web.enable-remote-write-receiver")
    receiver.start()
    gateway = Collector(
        tmp_path,
        COLLECTOR_DIR / "gateway-remotewrite.yaml",
        extra_env={"OTELCOL_REMOTE_WRITE_URL": f"{receiver.url}/api/v1/write"},
        serves_metrics=False,
    )
    gateway.start()
    sender = fleet.Fleet(
        fleet.Template.metrics(recorded), None, workers=4, endpoint=f"127.0.0.1:{gateway.http_port}", interval=0.5
    )
    stored = f"sum(count_over_time({MARKER}[1h]))"
    try:
        sender.start()
        wait_for(lambda: (receiver.value(stored) or 0) >= 8, 30, "the healthy path stores exports")
        receiver.stop()  # the receiver is down: writes fail, the spool holds them
        time.sleep(3)
        assert gateway.proc is not None
        gateway.proc.kill()  # SIGKILL with a spool full of unsent points
        gateway.proc.wait(10)
        gateway.start()  # the same spool directory
        time.sleep(3)
        receiver.start()  # the same storage
        time.sleep(2)
        sender.stop()
        acknowledged, unanswered = sender.stats.sent_requests, sender.stats.failed_requests
        assert acknowledged >= 40 and unanswered < acknowledged
        # Every acknowledged export arrives; one the gateway was killed before answering may too.
        got = wait_for(
            lambda: (n := receiver.value(stored) or 0) >= acknowledged and n,
            90,
            f"{acknowledged} exports stored after the outage",
        )
        assert acknowledged <= got <= acknowledged + unanswered, (got, acknowledged, unanswered)
        per_worker = {
            r["metric"]["service_instance_id"]: int(float(r["value"][1]))
            for r in receiver.query(f"count_over_time({MARKER}[1h])")
        }
        assert len(per_worker) == 4 and sum(per_worker.values()) == got
    finally:
        sender.stop()
        gateway.stop()
        receiver.stop()
