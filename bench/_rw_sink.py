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
(collector/gateway-remotewrite.yaml) against the sink and checks exact counts;
``python bench/_rw_sink.py --measure WORKERS SECONDS [--prometheus]`` measures
the sink's CPU under a fleet (bench/_otlp_fleet.py) and, with --prometheus,
compares its counts with those of a Prometheus fed the same batches by the
same gateway.
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
import urllib.parse
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
        try:
            wait_for(lambda: self.stats()["up"], 30, "rwsink up")
        except BaseException:
            self.stop()
            raise

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


def gateway_env(work: Path, sink: RwSink, otlp: int, telemetry: int) -> dict[str, str]:
    """collector/gateway-remotewrite.yaml's variables for a run in ``work``: OTLP/HTTP in on ``otlp``, writes to the
    sink, its spool in ``work`` on a free loopback port (not the defaults: a directory in the working directory and
    a fixed port another run may hold)."""
    return {
        "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{free_port()}",
        "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{otlp}",
        "OTELCOL_REMOTE_WRITE_URL": sink.url,
        "OTELCOL_TELEMETRY_PORT": str(telemetry),
        "OTELCOL_TRACES_FILE": str(work / "traces.jsonl"),
        "OTELCOL_STORAGE_DIR": str(work / "gateway-spool"),
        "OTELCOL_SPOOL_ENDPOINT": f"127.0.0.1:{free_port()}",
    }


# -- self-check: the real collector against the sink, exact counts ------------------------------------------

# No trace backend here: the gateway's traces go to its file exporter only.
GATEWAY_TRACES_OVERLAY = """\
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
            (work / "overlay.yaml").write_text(GATEWAY_TRACES_OVERLAY)
            env = gateway_env(work, sink, otlp, tele)
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


# -- measurement: the sink's CPU at a fleet's rate, its counts cross-checked against Prometheus --------------

# The same batches to Prometheus too: a second remote-write exporter with the shipped one's settings, fed by the
# spool beside it (a write failing at either goes back to the spool; the sink counts a repeated export once).
PROM_OVERLAY = """\
exporters:
  prometheus_remote_write/prom:
    endpoint: {url}
    resource_to_telemetry_conversion:
      enabled: true
    target_info:
      enabled: true
    remote_write_queue:
      enabled: false
    timeout: 30s
service:
  pipelines:
    metrics/write:
      exporters: [prometheus_remote_write/spooled, prometheus_remote_write/prom]
"""
ALL_SERIES = 'count({__name__=~".+"})'


def _prom_counters(port: int) -> dict[str, float]:
    """Prometheus's own counters (its /metrics: it need not scrape itself), summed over their labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = line.split("{", 1)[0].split(" ", 1)[0]
            totals[name] = totals.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def _prom_query(port: int, expr: str) -> float:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=60) as response:
        result = json.loads(response.read())["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def _measure(workers: int, seconds: float, prometheus: bool) -> None:
    """Fleet -> gateway -> sink: the sink's CPU at the fleet's rate. With ``prometheus``, the gateway
    also writes the same batches to a Prometheus 2.42 and the counts are compared (feasible where
    Prometheus keeps up on this machine, e.g. 100 workers)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _otlp_fleet import Fleet, Template, capture, trace_id

    cap = capture(8)
    metrics, traces = Template.metrics(cap.metrics), Template.traces(cap.traces)
    with tempfile.TemporaryDirectory(prefix="rwsink-measure-") as tmp:
        work = Path(tmp)
        sink = RwSink(trace_id=trace_id(0, 1).hex(), log=work / "sink.log")
        prom_port, otlp, tele = free_port(), free_port(), free_port()
        (work / "traces.yaml").write_text(GATEWAY_TRACES_OVERLAY)
        config = ["--config", str(ROOT / "collector" / "gateway-remotewrite.yaml")]
        config += ["--config", str(work / "traces.yaml")]
        procs = [sink.proc]
        try:
            if prometheus:
                (work / "prometheus.yml").write_text("global:\n  scrape_interval: 1h\n")
                (work / "prom.yaml").write_text(PROM_OVERLAY.format(url=f"http://127.0.0.1:{prom_port}/api/v1/write"))
                config += ["--config", str(work / "prom.yaml")]
                args = [f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'tsdb'}"]
                args += [f"--web.listen-address=127.0.0.1:{prom_port}", "--web.enable-remote-write-receiver"]
                procs.append(
                    start(["prometheus", *args, "--enable-feature=exemplar-storage"], log=work / "prometheus.log")
                )
                ready = f"http://127.0.0.1:{prom_port}/-/ready"
                wait_for(lambda: urllib.request.urlopen(ready, timeout=2), 60, "Prometheus ready")
            env = {**gateway_env(work, sink, otlp, tele), "OTELCOL_LOG_LEVEL": "warn"}
            collector = str(ROOT / "collector" / "build" / "otelcol-ml")
            procs.append(start([collector, *config], env=env, log=work / "gateway.log"))
            wait_for(lambda: _attempts(tele) >= 0, 30, "gateway up")
            fleet = Fleet(metrics, traces, workers=workers, endpoint=f"127.0.0.1:{otlp}", interval=10.0)
            fleet.start()
            time.sleep(15)  # every worker has exported at least once
            s0, t0 = sink.stats(), time.monotonic()
            time.sleep(seconds)
            s1, t1 = sink.stats(), time.monotonic()
            fleet.stop()
            time.sleep(8)  # the gateway's last batches (1 s) and retries
            end = sink.stats()
            dt = t1 - t0
            rate = (s1["samples"] - s0["samples"]) / dt
            cpu = 100 * (s1["cpu_seconds"] - s0["cpu_seconds"]) / dt
            print(f"{workers} workers, {metrics.points} points per export every 10 s, measured {dt:.0f} s:")
            print(
                f"  sink: {rate:.0f} samples/s, {(s1['requests'] - s0['requests']) / dt:.1f} requests/s, "
                f"{(s1['bytes'] - s0['bytes']) / dt / 1024:.0f} KiB/s -> {cpu:.2f} % of a core, "
                f"busy answering {100 * (s1['busy_seconds'] - s0['busy_seconds']) / dt:.1f} % of the time, "
                f"peak RSS {end['max_rss_kib'] / 1024:.0f} MiB"
            )
            print(f"  exports sent by the fleet: {fleet.stats.sent_requests} (failed {fleet.stats.failed_requests})")
            print(
                f"  sink: marker {end['marker_unique']} unique ({end['marker_duplicates']} duplicates), "
                f"{end['series']} series, {end['samples']} samples, {end['exemplars']} exemplars, "
                f"{end['trace_ids']} trace ids, trace_id(0, 1) found: {end['trace_id_found']}; "
                f"delay median {end['delay_median_s']:.2f} s, max {end['delay_max_s']:.2f} s"
            )
            if prometheus:
                appended = _prom_counters(prom_port)
                print(
                    f"  Prometheus: marker {_prom_query(prom_port, f'sum(count_over_time({MARKER}[1h]))'):.0f}, "
                    f"{_prom_query(prom_port, ALL_SERIES):.0f} series, "
                    f"{appended['prometheus_tsdb_head_samples_appended_total']:.0f} samples appended, "
                    f"{appended['prometheus_tsdb_exemplar_exemplars_appended_total']:.0f} exemplars appended"
                )
        finally:
            for proc in reversed(procs):
                stop(proc)


if __name__ == "__main__":
    if sys.argv[1:] == ["--selftest"]:
        _selftest()
    elif sys.argv[1:2] == ["--measure"] and len(sys.argv) in (4, 5) and sys.argv[4:] in ([], ["--prometheus"]):
        _measure(int(sys.argv[2]), float(sys.argv[3]), prometheus=sys.argv[4:] == ["--prometheus"])
    else:
        raise SystemExit(__doc__)
