"""A counting Prometheus remote-write receiver (bench/rwsink, Go) for the gateway bench.

Why not Prometheus: at 1,000 workers (~47k samples/s) a Prometheus sharing this
2-core machine with the fleet, agent and gateway cannot ingest fast enough, let
alone drain a 2-minute outage backlog, so what it lacks at the end is not a
measure of what the gateway lost. The sink only decodes and counts (requests,
samples, exemplars, distinct series, the marker metric's samples and delays,
exemplar trace ids) and can be taken down and up without losing its counts.

    sink = RwSink(trace_id="0f1e37...")   # builds collector/build/rwsink if needed
    ... point a gateway at sink.url ...
    sink.down(); ...; sink.up()          # a receiver outage: connections refused meanwhile
    sink.stats()["marker_unique"]        # one per export of every worker
    sink.stop()

``python bench/_rw_sink.py --selftest`` runs the real collector
(collector/gateway-remotewrite.yaml) against the sink and checks exact counts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests._net import free_port, start, stop, wait_for

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "bench" / "rwsink"
BINARY = ROOT / "collector" / "build" / "rwsink"
MARKER = "ml_train_learning_rate"


def _go() -> str:
    found = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(found).exists():
        raise RuntimeError("bench/_rw_sink.py: 'go' not found on PATH (the collector build needs it too)")
    return found


def build() -> Path:
    """collector/build/rwsink, (re)built when missing or older than its sources.

    Offline first (the modules are in the local cache once the collector is
    built); the normal module proxy only if that fails.
    """
    sources = [SOURCE / name for name in ("main.go", "go.mod", "go.sum")]
    if BINARY.exists() and BINARY.stat().st_mtime >= max(p.stat().st_mtime for p in sources):
        return BINARY
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    command = [_go(), "build", "-o", str(BINARY), "."]
    offline = {**os.environ, "GOFLAGS": "-mod=mod", "GOPROXY": "off"}
    done = subprocess.run(command, cwd=SOURCE, env=offline, capture_output=True, text=True)
    if done.returncode != 0:
        done = subprocess.run(command, cwd=SOURCE, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"building bench/rwsink failed:\n{done.stderr}")
    return BINARY


def _post(url: str, body: bytes = b"", timeout: float = 10.0) -> int:
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


class RwSink:
    """The sink as a process on two free 127.0.0.1 ports (write, control), stopped by PID."""

    def __init__(self, marker: str = MARKER, trace_id: str = "", log: Path | None = None) -> None:
        self.port, self.control = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/v1/write"
        self.control_url = f"http://127.0.0.1:{self.control}"
        args = [str(build()), f"-listen=127.0.0.1:{self.port}", f"-control=127.0.0.1:{self.control}"]
        args += [f"-marker={marker}", f"-trace-id={trace_id}"]
        self.proc = start(args, log=log)
        wait_for(lambda: self.stats()["up"], 30, "rwsink up")

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def stats(self, trace_id: str | None = None) -> dict[str, Any]:
        """The counts (from the control port: answered while the write port is down too).

        ``trace_id``: whether this one was seen, instead of the one given at start.
        """
        query = f"?trace_id={trace_id}" if trace_id else ""
        with urllib.request.urlopen(f"{self.control_url}/stats{query}", timeout=10) as response:
            return dict(json.loads(response.read()))

    def down(self) -> None:
        """Stop listening and close open connections: senders get "connection refused", as from a dead receiver."""
        assert _post(f"{self.control_url}/down") == 204

    def up(self) -> None:
        assert _post(f"{self.control_url}/up") == 204

    def stop(self) -> None:
        stop(self.proc)

    def __enter__(self) -> RwSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- self-check: the real collector against the sink, exact counts ------------------------------------------

GATEWAY_OVERLAY = """\
service:
  pipelines:
    traces:
      exporters: [file/traces]
"""


def _selftest() -> None:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    collector = ROOT / "collector" / "build" / "otelcol-ml"
    if not collector.exists():
        raise SystemExit(f"{collector} missing: build it with collector/build.sh")
    with tempfile.TemporaryDirectory(prefix="rwsink-selftest-") as tmp:
        work = Path(tmp)
        tracer = TracerProvider().get_tracer("selftest")
        first_span = tracer.start_span("probe")  # the first export's trace id, known before the sink starts
        first = f"{first_span.get_span_context().trace_id:032x}"
        sink = RwSink(trace_id=first, log=work / "sink.log")
        gateway = provider = None
        otlp, tele = free_port(), free_port()
        try:
            (work / "overlay.yaml").write_text(GATEWAY_OVERLAY)
            env = {
                "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{free_port()}",
                "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{otlp}",
                "OTELCOL_REMOTE_WRITE_URL": sink.url,
                "OTELCOL_TELEMETRY_PORT": str(tele),
                "OTELCOL_TRACES_FILE": str(work / "traces.jsonl"),
            }
            config = ["--config", str(ROOT / "collector" / "gateway-remotewrite.yaml")]
            config += ["--config", str(work / "overlay.yaml")]
            gateway = start([str(collector), *config], env=env, log=work / "gateway.log")
            wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{tele}/metrics", timeout=2), 30, "gateway up")

            reader = PeriodicExportingMetricReader(
                OTLPMetricExporter(endpoint=f"http://127.0.0.1:{otlp}/v1/metrics"), export_interval_millis=10**9
            )
            provider = MeterProvider([reader], resource=Resource.create({"service.name": "rwsink-selftest"}))
            meter = provider.get_meter("selftest")

            def send_time(_: CallbackOptions) -> list[Observation]:
                return [Observation(time.time())]  # the marker: its value is its send time, as the fleet's

            meter.create_observable_gauge("ml.train.learning_rate", [send_time])
            steps = meter.create_histogram("ml.train.step.duration", unit="s")
            trace_ids: list[str] = []

            def export(span: Any = None) -> None:
                """One export: one marker sample, and one step with its exemplar (reset at each collection)."""
                span = span or tracer.start_span("step")
                with trace.use_span(span, end_on_exit=True):
                    steps.record(0.25)
                trace_ids.append(f"{span.get_span_context().trace_id:032x}")
                assert provider.force_flush(10_000), "the gateway refused an OTLP export"
                time.sleep(0.3)

            def settled(count: int) -> dict[str, Any] | None:
                s = sink.stats()
                return s if s["marker_samples"] >= count else None

            export(first_span)
            for _ in range(4):
                export()
            s = wait_for(lambda: settled(5), 30, "5 marker samples at the sink")
            assert s["marker_samples"] == s["marker_unique"] == s["delay_count"] == 5, s
            assert s["exemplars"] == 5 and s["trace_ids"] == 5 and s["trace_id_found"], s
            assert all(sink.stats(t)["trace_id_found"] for t in trace_ids), trace_ids
            assert not sink.stats("00" * 16)["trace_id_found"]
            print(f"up: {len(trace_ids)} exports -> {_summary(s)}")

            attempts = _attempts(tele)
            sink.down()
            requests = sink.stats()["requests"]
            try:
                urllib.request.urlopen(sink.url, data=b"", timeout=5)
                raise AssertionError("the sink's write port answered while down")
            except urllib.error.URLError as exc:
                assert isinstance(exc.reason, ConnectionRefusedError), exc
            for _ in range(3):
                export()
            # The exporter retries a refused connection without logging it: its own count of write
            # attempts (successful or not) shows it kept trying while nothing reached the sink.
            wait_for(lambda: _attempts(tele) >= attempts + 2, 60, "the gateway retrying its writes")
            assert sink.stats()["requests"] == requests, "a request reached the sink while down"
            print(f"down: 3 exports held by the gateway; {_attempts(tele) - attempts:.0f} write attempts refused")
            sink.up()
            s = wait_for(lambda: settled(8), 90, "the 3 held exports delivered after /up")
            time.sleep(2)  # anything that would arrive twice arrives now
            s = sink.stats()
            assert s["marker_samples"] == s["marker_unique"] == 8 and s["marker_duplicates"] == 0, s
            assert s["exemplars"] == 8 and s["trace_ids"] == 8, s
            assert s["samples_by_name"][MARKER] == 8, s
            print(f"up again: 8 exports -> {_summary(s)}")

            assert _post(sink.url, b"not snappy") == 400
            bad = sink.stats()
            assert bad["bad_requests"] == 1 and bad["samples"] == s["samples"], bad
            print("a body that is not snappy: 400, counted as bad, nothing else counted")
        finally:
            if provider is not None:
                provider.shutdown()
            stop(gateway)
            sink.stop()
    print("rwsink selftest: OK")


def _summary(s: dict[str, Any]) -> str:
    return (
        f"{s['requests']} requests, {s['samples']} samples in {s['series']} series, "
        f"marker {s['marker_samples']} ({s['marker_duplicates']} duplicates), {s['exemplars']} exemplars, "
        f"{s['trace_ids']} trace ids (first found: {s['trace_id_found']}), "
        f"delay median {s['delay_median_s']:.2f} s / max {s['delay_max_s']:.2f} s"
    )


def _attempts(telemetry_port: int) -> float:
    """The gateway's remote-write attempts, from its own metrics (each try of a retried batch counts)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{telemetry_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("otelcol_exporter_prometheusremotewrite_sent_batches")
    )


if __name__ == "__main__":
    if sys.argv[1:] != ["--selftest"]:
        raise SystemExit(__doc__)
    _selftest()
