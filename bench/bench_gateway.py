"""One gateway under a fleet of simulated workers: sizing, receiver outage, restart, burst.

    python bench/bench_gateway.py [--workers 100,300,1000] [--rounds 2] [--variants remotewrite,scraped]
                                  [--faults] [--outage 120]

Path: simulated workers (bench/_otlp_fleet.py: a real instrumented Keras
worker with 8 fake GPUs, recorded once and replayed per worker with its own
service.instance.id) -> OTLP/HTTP -> agent (collector/agent.yaml) -> OTLP gRPC
-> gateway (collector/gateway-remotewrite.yaml, or collector/gateway.yaml
scraped) -> Prometheus 2.42 (--web.enable-remote-write-receiver,
exemplar storage, the bundled rules). Every process is fresh for each trial,
on free 127.0.0.1 ports, stopped by PID.

Per trial: gateway CPU (from /proc, over the measuring window after a
warm-up), RSS and peak RSS, bytes read/written (/proc/<pid>/io rchar/wchar:
its network traffic), points/s accepted, end-to-end delay (a sample of
workers carries its send time as the learning-rate value; the bench polls
Prometheus until that value is queryable), series in Prometheus, and points
lost: the otelcol_* refused/failed counters of agent and gateway, and, for
remote write, an exact count at the receiver: every export of every worker
is one learning-rate sample with its own timestamp, so
sum(count_over_time(...)) must equal the exports the fleet made.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write
from _otlp_fleet import Fleet, Template, capture, instance_id, trace_id
from _rw_sink import RwSink

from tests._net import free_port, start, stop, wait_for

ROOT = Path(__file__).resolve().parents[1]
COLLECTOR = ROOT / "collector"
BINARY = COLLECTOR / "build" / "otelcol-ml"
RULES = COLLECTOR / "prometheus" / "rules" / "otel-ml.rules.yml"
TICK = os.sysconf("SC_CLK_TCK")
MARKER = "ml_train_learning_rate"

AGENT_OVERLAY = """\
service:
  telemetry:
    metrics:
      level: normal
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: {port}
"""
# No Tempo in the bench: the gateway's traces go to its file exporter only. The memory_limiter
# is that of a gateway in a 2 GiB container (limit_percentage: 80 of the cgroup's 2 GiB).
GATEWAY_OVERLAY = """\
processors:
  memory_limiter:
    limit_percentage: 0
    spike_limit_percentage: 0
    limit_mib: 1600
    spike_limit_mib: 400
service:
  pipelines:
    traces:
      exporters: [file/traces]
"""


def _get(url: str, timeout: float = 30.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


# The spool's way out inside the gateway (gateway-remotewrite.yaml): the loopback receiver refuses and the spooled
# writer fails while the receiver is down, and the spool retries those points: counted apart, not as losses.
SPOOL_LOOP = ('receiver="otlp/spool"', 'exporter="prometheus_remote_write/spooled"')


def otelcol_counters(port: int) -> dict[str, float]:
    """The collector's own metrics, summed by name (labels dropped); the spool's loop under ``spool_loop_*``."""
    totals: dict[str, float] = {}
    for line in _get(f"http://127.0.0.1:{port}/metrics", 10).splitlines():
        if line.startswith("otelcol_"):
            name = re.split(r"[{ ]", line, maxsplit=1)[0]
            if any(label in line for label in SPOOL_LOOP):
                name = "spool_loop_" + name
            totals[name] = totals.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def proc_sample(pid: int) -> dict[str, float]:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return {
        "cpu": (int(stat[11]) + int(stat[12])) / TICK,
        "rss": int(status["VmRSS"].split()[0]) / 1024,
        "anon": int(status.get("RssAnon", "0 kB").split()[0]) / 1024,
        "hwm": int(status["VmHWM"].split()[0]) / 1024,
        "rchar": float(io["rchar"]),
        "wchar": float(io["wchar"]),
        "t": time.monotonic(),
    }


@contextlib.contextmanager
def _workdir(kind: str) -> Iterator[str]:
    """A temporary directory; kept (for the logs) under $BENCH_GATEWAY_KEEP when that is set."""
    keep = os.environ.get("BENCH_GATEWAY_KEEP")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        yield tempfile.mkdtemp(prefix=f"{kind}-", dir=keep)
    else:
        with tempfile.TemporaryDirectory(prefix=f"bench-gateway-{kind}-") as tmp:
            yield tmp


class Stack:
    """Prometheus, gateway and agent (and the counting sink as the remote-write receiver), fresh, on free ports.

    ``receiver``: ``prometheus`` (the gateway writes to Prometheus) or ``sink``
    (to bench/rwsink, which counts exactly at any rate; Prometheus then only
    scrapes the collectors' own metrics and evaluates the alerts).
    """

    def __init__(
        self, workdir: Path, variant: str, persistent: bool = False, receiver: str = "prometheus", consumers: int = 1
    ) -> None:
        self.dir, self.variant, self.persistent, self.receiver = workdir, variant, persistent, receiver
        self.consumers = consumers  # OTELCOL_SPOOL_CONSUMERS (docs/collector.md: 2 from a few hundred workers)
        self.sink: RwSink | None = None
        self.prom_port, self.gw_grpc, self.gw_http = free_port(), free_port(), free_port()
        self.gw_prom, self.gw_tele, self.gw_spool = free_port(), free_port(), free_port()
        self.agent_grpc, self.agent_http, self.agent_tele = free_port(), free_port(), free_port()
        self.procs: dict[str, Any] = {}
        self.traces_file = workdir / "gateway-traces.jsonl"
        (workdir / "agent-overlay.yaml").write_text(AGENT_OVERLAY.format(port=self.agent_tele))
        (workdir / "gateway-overlay.yaml").write_text(GATEWAY_OVERLAY)
        rw = variant == "remotewrite"
        scrape = [("otelcol-gateway", self.gw_tele, "5s", False)]
        if not rw:
            scrape.append(("otel-collector", self.gw_prom, "10s", True))
        jobs = "".join(
            f"  - job_name: {job}\n    scrape_interval: {every}\n    honor_labels: {str(honor).lower()}\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
            for job, port, every, honor in scrape
        )
        (workdir / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 10s\n  evaluation_interval: 5s\n"
            "storage:\n  exemplars:\n    max_exemplars: 1000000\n"
            f"rule_files:\n  - {RULES}\nscrape_configs:\n{jobs}"
        )

    # -- processes
    def start_prometheus(self) -> None:
        self.procs["prometheus"] = start(
            [
                "prometheus",
                f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.prom_port}",
                "--web.enable-remote-write-receiver",
                "--enable-feature=exemplar-storage",
            ],
            log=self.dir / "prometheus.log",
        )
        wait_for(lambda: _get(f"http://127.0.0.1:{self.prom_port}/-/ready", 2), 60, "Prometheus ready")

    def start_gateway(self) -> None:
        config = "gateway-remotewrite.yaml" if self.variant == "remotewrite" else "gateway.yaml"
        env = {
            "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{self.gw_grpc}",
            "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{self.gw_http}",
            "OTELCOL_PROMETHEUS_ENDPOINT": f"127.0.0.1:{self.gw_prom}",
            "OTELCOL_REMOTE_WRITE_URL": f"http://127.0.0.1:{self.prom_port}/api/v1/write",
            "OTELCOL_TELEMETRY_PORT": str(self.gw_tele),
            "OTELCOL_TRACES_FILE": str(self.traces_file),
            "OTELCOL_LOG_LEVEL": "warn",
            "OTELCOL_SPOOL_ENDPOINT": f"127.0.0.1:{self.gw_spool}",
            "OTELCOL_STORAGE_DIR": str(self.spool_dir),
            "OTELCOL_SPOOL_CONSUMERS": str(self.consumers),
        }
        if self.sink is not None:
            env["OTELCOL_REMOTE_WRITE_URL"] = self.sink.url
        cmd = [str(BINARY), "--config", str(COLLECTOR / config), "--config", str(self.dir / "gateway-overlay.yaml")]
        self.procs["gateway"] = self._restart_logged(cmd, env, "gateway")
        wait_for(lambda: otelcol_counters(self.gw_tele) is not None, 30, "gateway up")

    def kill(self, name: str, sig: int) -> None:
        """Signal a process of the stack (by its PID) and wait for it to end."""
        proc = self.procs[name]
        os.killpg(proc.pid, sig)
        proc.wait(30)

    def _restart_logged(self, cmd: list[str], env: dict[str, str], name: str) -> Any:
        stop(self.procs.get(name))
        with (self.dir / f"{name}.log").open("ab") as log:
            return subprocess.Popen(
                cmd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def start_agent(self) -> None:
        env = {
            "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{self.agent_grpc}",
            "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{self.agent_http}",
            "OTELCOL_GATEWAY_ENDPOINT": f"127.0.0.1:{self.gw_grpc}",
            "OTELCOL_STORAGE_DIR": str(self.dir / "agent-queue"),
            "OTELCOL_LOG_LEVEL": "warn",
        }
        cmd = [str(BINARY), "--config", str(COLLECTOR / "agent.yaml")]
        if self.persistent:
            cmd += ["--config", str(COLLECTOR / "agent-persistent-queue.yaml")]
        cmd += ["--config", str(self.dir / "agent-overlay.yaml")]
        self.procs["agent"] = self._restart_logged(cmd, env, "agent")
        wait_for(lambda: otelcol_counters(self.agent_tele) is not None, 30, "agent up")

    @property
    def spool_dir(self) -> Path:
        return self.dir / "gateway-spool"

    def spool_bytes(self) -> int:
        """Bytes the gateway's spool holds on disk."""
        return sum(f.stat().st_size for f in self.spool_dir.rglob("*") if f.is_file()) if self.spool_dir.exists() else 0

    def start(self) -> None:
        self.start_prometheus()
        if self.receiver == "sink":
            self.sink = RwSink(trace_id=trace_id(0, 1).hex(), log=self.dir / "rwsink.log")
        self.start_gateway()
        self.start_agent()

    def stop(self) -> None:
        for name in ("agent", "gateway", "prometheus"):
            stop(self.procs.get(name))
        if self.sink is not None:
            self.sink.stop()

    def receiver_down(self) -> None:
        if self.sink is not None:
            self.sink.down()
        else:
            self.kill("prometheus", signal.SIGTERM)

    def receiver_up(self) -> None:
        if self.sink is not None:
            self.sink.up()
        else:
            self.start_prometheus()

    def stored_exports(self) -> float:
        """Exports the receiver stored: one learning-rate sample (its own timestamp) per export, duplicates once."""
        if self.sink is not None:
            return float(self.sink.stats()["marker_unique"])
        return self.scalar(f"sum(count_over_time({MARKER}[1h]))")

    def stored_series(self) -> float:
        if self.sink is not None:
            return float(self.sink.stats()["series"])
        return self.scalar('count({service_instance_id=~"fleet-.*"})')

    def pid(self, name: str) -> int:
        return int(self.procs[name].pid)

    # -- Prometheus API
    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.prom_port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        return list(json.loads(_get(url, 120))["data"]["result"])

    def scalar(self, expr: str) -> float:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else 0.0


@dataclass
class Trial:
    workers: int
    variant: str
    receiver: str = "prometheus"
    cpu: float = 0.0
    rss: float = 0.0
    hwm: float = 0.0
    anon: float = 0.0
    spool_mib: float = 0.0
    agent_cpu: float = 0.0
    prom_cpu: float = 0.0
    net_in: float = 0.0
    net_out: float = 0.0
    points_s: float = 0.0
    delays: list[float] = field(default_factory=list)
    series: float = 0.0
    exports: int = 0
    received: float = 0.0
    refused: float = 0.0
    failed: float = 0.0
    gen_failed: int = 0
    sink_delay: tuple[float, float] | None = None  # (median, max) from the sink's reservoir

    @property
    def delay(self) -> float:
        if self.sink_delay is not None:
            return self.sink_delay[0]
        return statistics.median(self.delays) if self.delays else float("nan")

    @property
    def delay_max(self) -> float:
        if self.sink_delay is not None:
            return self.sink_delay[1]
        return max(self.delays) if self.delays else float("nan")


LOSS_COUNTERS = (
    "otelcol_receiver_refused_metric_points",
    "otelcol_exporter_send_failed_metric_points",
    "otelcol_exporter_enqueue_failed_metric_points",
    "otelcol_processor_dropped_metric_points",
)


def losses(counters: dict[str, float]) -> tuple[float, float]:
    """(refused, failed to send or enqueue) points in a collector's own counters."""
    get = lambda n: counters.get(n, 0.0) + counters.get(n + "_total", 0.0)  # noqa: E731
    refused = get(LOSS_COUNTERS[0])
    failed = sum(get(n) for n in LOSS_COUNTERS[1:])
    return refused, failed


class DelayProbe(threading.Thread):
    """Polls Prometheus for the sampled workers' marker (= its send time); records now - marker on change."""

    def __init__(self, stack: Stack, workers: list[int]) -> None:
        super().__init__(daemon=True)
        self.stack, self.done = stack, threading.Event()
        self.delays: list[float] = []
        ids = "|".join(instance_id(w) + "-*" for w in workers)
        self.expr = f'{MARKER}{{service_instance_id=~"{ids}"}}'
        self.seen: dict[str, float] = {}

    def run(self) -> None:
        while not self.done.wait(0.5):
            try:
                result = self.stack.query(self.expr)
            except OSError:
                continue
            now = time.time()
            for series in result:
                key, value = series["metric"]["service_instance_id"], float(series["value"][1])
                if key in self.seen and value != self.seen[key]:
                    self.delays.append(now - value)
                self.seen[key] = value


def receiver_for(workers: int, choice: str) -> str:
    """``auto``: Prometheus up to 300 workers, the counting sink beyond (Prometheus on these 2 shared cores
    does not ingest 1,000 workers' 47,000 samples/s, let alone a backlog: bench/results/gateway-before-spool.md)."""
    return choice if choice != "auto" else ("sink" if workers >= 1000 else "prometheus")


def consumers_for(workers: int) -> int:
    """The spool's writers as docs/collector.md sizes them: 1 (always in order) up to 100 workers, 2 beyond."""
    return 1 if workers <= 100 else 2


def run_trial(
    templates: tuple[Template, Template],
    workers: int,
    variant: str,
    warmup: float,
    measure: float,
    interval: float,
    receiver: str = "prometheus",
) -> Trial:
    receiver = receiver if variant == "remotewrite" else "prometheus"
    label = (
        f"{receiver}, {consumers_for(workers)} spool writer(s)" if variant == "remotewrite" else "prometheus (scrape)"
    )
    trial = Trial(workers, variant, label)
    with _workdir("trial") as tmp:
        stack = Stack(Path(tmp), variant, receiver=receiver, consumers=consumers_for(workers))
        try:
            stack.start()
            fleet = Fleet(*templates, workers=workers, endpoint=f"127.0.0.1:{stack.agent_http}", interval=interval)
            fleet.start()
            probe = DelayProbe(stack, list(range(0, workers, max(1, workers // 5))))
            time.sleep(warmup)
            if stack.sink is None:
                probe.start()
            d0 = stack.sink.stats()["delay_count"] if stack.sink is not None else 0
            gw0, ag0 = proc_sample(stack.pid("gateway")), proc_sample(stack.pid("agent"))
            pr0 = proc_sample(stack.pid("prometheus"))
            c0 = otelcol_counters(stack.gw_tele)
            time.sleep(measure)
            gw1, ag1 = proc_sample(stack.pid("gateway")), proc_sample(stack.pid("agent"))
            pr1 = proc_sample(stack.pid("prometheus"))
            c1 = otelcol_counters(stack.gw_tele)
            probe.done.set()
            fleet.stop()
            dt = gw1["t"] - gw0["t"]
            trial.cpu = 100 * (gw1["cpu"] - gw0["cpu"]) / dt
            trial.agent_cpu = 100 * (ag1["cpu"] - ag0["cpu"]) / dt
            trial.prom_cpu = 100 * (pr1["cpu"] - pr0["cpu"]) / dt
            trial.rss, trial.hwm, trial.anon = gw1["rss"], gw1["hwm"], gw1["anon"]
            trial.spool_mib = stack.spool_bytes() / 2**20
            trial.net_in = (gw1["rchar"] - gw0["rchar"]) / dt / 1024
            trial.net_out = (gw1["wchar"] - gw0["wchar"]) / dt / 1024
            accepted = ("otelcol_receiver_accepted_metric_points", "otelcol_receiver_accepted_metric_points_total")
            trial.points_s = sum(c1.get(n, 0) - c0.get(n, 0) for n in accepted) / dt
            trial.delays = probe.delays
            if stack.sink is not None:  # the sink's reservoir: median and max of every marker after warm-up
                stats = stack.sink.stats()
                if stats["delay_count"] > d0:
                    trial.sink_delay = (stats["delay_median_s"], stats["delay_max_s"])
            time.sleep(8)  # the last exports through agent (1 s batch) and gateway (1 s batch)
            trial.exports = fleet.stats.sent_requests
            trial.gen_failed = fleet.stats.failed_requests
            ra, fa = losses(otelcol_counters(stack.agent_tele))
            rg, fg = losses(otelcol_counters(stack.gw_tele))
            trial.refused, trial.failed = ra + rg, fa + fg
            trial.series = stack.stored_series()
            if variant == "remotewrite":
                trial.received = stack.stored_exports()
        finally:
            stack.stop()
    return trial


def fmt(t: Trial) -> str:
    lost = "n/a (scraped)" if t.variant != "remotewrite" else f"{t.exports - t.received:.0f}"
    return (
        f"| {t.variant} | {t.receiver} | {t.workers} | {t.cpu:.1f} | {t.rss:.0f} ({t.anon:.0f}) | {t.hwm:.0f} | "
        f"{t.spool_mib:.0f} | {t.points_s:.0f} | "
        f"{t.net_in:.0f} | {t.series:.0f} | {t.delay:.1f} / {t.delay_max:.1f} | {t.exports} | {lost} | "
        f"{t.refused:.0f} / {t.failed:.0f} | {t.agent_cpu:.1f} | {t.prom_cpu:.1f} |"
    )


HEADER = (
    "| gateway | receiver | workers x 8 GPUs | gateway CPU (% of a core) | RSS (anonymous) (MiB) | peak RSS (MiB) | "
    "spool on disk (MiB) | points/s accepted | "
    "in (KiB/s) | series at the receiver | delay median / max (s) | exports sent | "
    "not at the receiver 8 s after the end | "
    "points refused / failed (otelcol_*) | agent CPU (%) | Prometheus CPU (%) |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
)


@dataclass
class Fault:
    name: str
    workers: int
    exports: int = 0
    received: float = 0.0
    gen_failed: int = 0
    queue_peak: float = 0.0
    queue_capacity: float = 0.0
    hwm: float = 0.0
    anon_peak: float = 0.0
    spool_peak_mib: float = 0.0
    cpu: float = 0.0
    cpu_peak: float = 0.0
    retried: float = 0.0
    receiver: str = "prometheus"
    drain_s: float = float("nan")
    refused: float = 0.0
    failed: float = 0.0
    alerts: str = ""
    gateway_alive: bool = True
    exemplar: str = ""


class Watch(threading.Thread):
    """Samples the gateway's queue size (its own metrics) and RSS every second."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(daemon=True)
        self.stack, self.done = stack, threading.Event()
        self.queue_peak = self.capacity = self.rss_peak = self.anon_peak = self.spool_peak = 0.0
        self.queue = 0.0
        self.cpu_peak = 0.0  # the highest 5-second mean (% of a core)

    def run(self) -> None:
        window: list[tuple[float, float]] = []
        while not self.done.wait(1.0):
            try:
                counters = otelcol_counters(self.stack.gw_tele)
                self.queue = counters.get("otelcol_exporter_queue_size", 0.0)
                self.queue_peak = max(self.queue_peak, self.queue)
                self.capacity = max(self.capacity, counters.get("otelcol_exporter_queue_capacity", 0.0))
                sample = proc_sample(self.stack.pid("gateway"))
                self.rss_peak = max(self.rss_peak, sample["rss"])
                self.anon_peak = max(self.anon_peak, sample["anon"])
                self.spool_peak = max(self.spool_peak, self.stack.spool_bytes() / 2**20)
                window = [*window[-4:], (sample["t"], sample["cpu"])]
                if len(window) == 5:
                    (t0, c0), (t1, c1) = window[0], window[-1]
                    self.cpu_peak = max(self.cpu_peak, 100 * (c1 - c0) / (t1 - t0))
            except (OSError, KeyError, ValueError):
                window = []  # the gateway restarted: its CPU counter starts again


def run_fault(
    templates: tuple[Template, Template],
    name: str,
    workers: int,
    outage: float,
    interval: float,
    receiver: str = "prometheus",
) -> Fault:
    """One fault scenario on a fresh remote-write stack; counts every export at the receiver."""
    fault = Fault(name, workers, receiver=f"{receiver}, {consumers_for(workers)} spool writer(s)")
    with _workdir("fault") as tmp:
        stack = Stack(
            Path(tmp),
            "remotewrite",
            persistent="persistent" in name,
            receiver=receiver,
            consumers=consumers_for(workers),
        )
        try:
            stack.start()
            g0 = proc_sample(stack.pid("gateway"))
            fleet = Fleet(
                *templates,
                workers=workers,
                endpoint=f"127.0.0.1:{stack.agent_http}",
                interval=interval,
                burst=name == "burst",
            )
            watch = Watch(stack)
            watch.start()
            fleet.start()
            time.sleep(25)
            t0 = time.monotonic()
            if name == "receiver down":
                stack.receiver_down()
                time.sleep(outage)
                stack.receiver_up()
                t0 = time.monotonic()
                try:
                    wait_for(lambda: watch.queue == 0, 300, "the gateway's queue drained", interval=1)
                    fault.drain_s = time.monotonic() - t0
                except AssertionError:
                    fault.drain_s = float("inf")  # still draining after 300 s: counted as it stands
            elif name.startswith("gateway restart"):
                stack.kill("gateway", signal.SIGKILL if "SIGKILL" in name else signal.SIGTERM)
                stack.start_gateway()
            elif name == "burst":
                pass  # every worker started at once, the same second of each interval
            time.sleep(30)
            fleet.stop()
            time.sleep(10)
            watch.done.set()
            if not name.startswith("gateway restart"):
                g1 = proc_sample(stack.pid("gateway"))
                fault.cpu = 100 * (g1["cpu"] - g0["cpu"]) / (g1["t"] - g0["t"])
            fault.cpu_peak = watch.cpu_peak
            fault.exports, fault.gen_failed = fleet.stats.sent_requests, fleet.stats.failed_requests
            fault.received = stack.stored_exports()
            fault.queue_peak, fault.queue_capacity, fault.hwm = watch.queue_peak, watch.capacity, watch.rss_peak
            fault.anon_peak, fault.spool_peak_mib = watch.anon_peak, watch.spool_peak
            fault.gateway_alive = stack.procs["gateway"].poll() is None
            ra, fa = losses(otelcol_counters(stack.agent_tele))
            gateway = otelcol_counters(stack.gw_tele)
            rg, fg = losses(gateway)
            fault.refused, fault.failed = ra + rg, fa + fg
            fault.retried = gateway.get("spool_loop_otelcol_exporter_send_failed_metric_points", 0.0) + gateway.get(
                "spool_loop_otelcol_exporter_send_failed_metric_points_total", 0.0
            )
            fault.alerts = ", ".join(
                f"{a['metric']['alertname']} ({a['metric']['alertstate']})"
                for a in stack.query('ALERTS{alertname=~"Collector.*"}')
            )
            # Exemplars: worker 0's second export carried trace_id(0, 1) on its step-duration exemplar.
            tid = trace_id(0, 1).hex()
            if stack.sink is not None:
                stats = stack.sink.stats(tid)
                where, found_it, n_ids = "at the sink", stats["trace_id_found"], stats["trace_ids"]
            else:
                url = f"http://127.0.0.1:{stack.prom_port}/api/v1/query_exemplars?" + urllib.parse.urlencode(
                    {"query": "ml_train_step_duration_seconds_bucket", "start": time.time() - 3600, "end": time.time()}
                )
                found = json.loads(_get(url, 120))["data"]
                ids = {e["labels"].get("trace_id") for group in found for e in group["exemplars"]}
                where, found_it, n_ids = "in Prometheus", tid in ids, len(ids)
            spans = stack.traces_file.read_text() if stack.traces_file.exists() else ""
            fault.exemplar = (
                f"{'found' if found_it else 'MISSING'} {where} ({n_ids} trace ids), "
                f"span {'found' if tid in spans else 'MISSING'} in the gateway's trace file"
            )
        finally:
            stack.stop()
    return fault


FAULT_HEADER = (
    "| fault | receiver | workers x 8 GPUs | exports sent | missing at the receiver | refused at the worker | "
    "spool peak / capacity (points) | spool peak on disk (MiB) | gateway peak RSS, anonymous (MiB) | "
    "gateway CPU mean, peak 5 s (% of a core) | drain after recovery (s) | "
    "points lost: refused / failed (otelcol_*) | writes retried from the spool (points) | gateway alive | "
    "alerts at the end | exemplar trace id |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
)


def fmt_fault(f: Fault) -> str:
    return (
        f"| {f.name} | {f.receiver} | {f.workers} | {f.exports} | {f.exports - f.received:.0f} | {f.gen_failed} | "
        f"{f.queue_peak:.0f} / {f.queue_capacity:.0f} | {f.spool_peak_mib:.0f} | {f.hwm:.0f}, {f.anon_peak:.0f} | "
        f"{f.cpu:.0f}, {f.cpu_peak:.0f} | {f.drain_s:.0f} | "
        f"{f.refused:.0f} / {f.failed:.0f} | {f.retried:.0f} | {'yes' if f.gateway_alive else 'NO'} | "
        f"{f.alerts or '-'} | {f.exemplar} |"
    )


def fit_seconds(endpoint: str, workdir: Path) -> float:
    """Seconds from start to "fit finished" of a real instrumented Keras fit exporting OTLP to ``endpoint``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        {
            "OTEL_SERVICE_NAME": "trainer",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_METRIC_EXPORT_INTERVAL": "1000",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "CUDA_VISIBLE_DEVICES": "",
            "PYTHONUNBUFFERED": "1",
        }
    )
    instrument = str(Path(sys.executable).parent / "opentelemetry-instrument")
    args = ["--epochs", "4", "--samples", "4096", "--batch-size", "16", "--slow-step", "-1"]
    started = time.monotonic()
    proc = subprocess.Popen(
        [instrument, sys.executable, str(ROOT / "examples" / "keras_train.py"), *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    finished = float("nan")
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(b"fit finished"):
            finished = time.monotonic() - started
    proc.wait(120)
    return finished


def run_fit_stall(rounds: int) -> str:
    """A real fit against a healthy collector and against a stalled one (SIGSTOP), interleaved."""
    samples: dict[str, list[float]] = {"healthy": [], "stalled": []}
    with _workdir("fit") as tmp:
        stack = Stack(Path(tmp), "remotewrite")
        try:
            stack.start_prometheus()
            stack.start_gateway()
            stack.start_agent()
            endpoint = f"http://127.0.0.1:{stack.agent_grpc}"
            for r in range(rounds):
                for case in ("healthy", "stalled") if r % 2 == 0 else ("stalled", "healthy"):
                    if case == "stalled":
                        os.killpg(stack.procs["agent"].pid, signal.SIGSTOP)
                    try:
                        samples[case].append(fit_seconds(endpoint, Path(tmp)))
                    finally:
                        if case == "stalled":
                            os.killpg(stack.procs["agent"].pid, signal.SIGCONT)
                    print(case, samples[case][-1], flush=True)
        finally:
            stack.stop()
    h, st = statistics.median(samples["healthy"]), statistics.median(samples["stalled"])
    return (
        "\nA real instrumented Keras fit (examples/keras_train.py, 4 epochs x 256 steps, OTLP gRPC export every 1 s) "
        "pointed at the agent, healthy or stopped with SIGSTOP (accepts connections, never answers); "
        f"seconds from start to the end of fit, medians of {rounds} interleaved rounds:\n\n"
        "| collector | fit (s) | samples |\n|---|---|---|\n"
        f"| healthy | {h:.2f} | {', '.join(f'{x:.2f}' for x in samples['healthy'])} |\n"
        f"| stalled | {st:.2f} | {', '.join(f'{x:.2f}' for x in samples['stalled'])} |\n\n"
        f"Ratio stalled / healthy: {st / h:.3f}.\n"
    )


def summary(trials: list[Trial]) -> str:
    """Medians per gateway and fleet size, and a least-squares line of CPU and RSS against workers."""
    out = (
        "\nMedians per gateway and size:\n\n| gateway | workers x 8 GPUs | CPU (% of a core) | peak RSS (MiB) | "
        "points/s | series | delay median (s) |\n|---|---|---|---|---|---|---|\n"
    )
    groups: dict[tuple[str, int], list[Trial]] = {}
    for t in trials:
        groups.setdefault((t.variant, t.workers), []).append(t)
    for (variant, workers), ts in sorted(groups.items()):
        med = {k: statistics.median(getattr(t, k) for t in ts) for k in ("cpu", "hwm", "points_s", "series", "delay")}
        out += (
            f"| {variant} | {workers} | {med['cpu']:.1f} | {med['hwm']:.0f} | "
            f"{med['points_s']:.0f} | {med['series']:.0f} | {med['delay']:.1f} |\n"
        )
    for variant in sorted({v for v, _ in groups}):
        xs = [t.workers for t in trials if t.variant == variant]
        if len(set(xs)) < 2:
            continue
        cpu = statistics.linear_regression(xs, [t.cpu for t in trials if t.variant == variant])
        out += (
            f"\n{variant}: CPU ~ {cpu.intercept:.1f} + {cpu.slope * 1000:.1f} x (workers / 1,000) % of a core "
            f"(least squares over {len(xs)} trials).\n"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", default="100,300,1000")
    parser.add_argument("--variants", default="remotewrite,scraped")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=float, default=25.0)
    parser.add_argument("--measure", type=float, default=40.0)
    parser.add_argument("--interval", type=float, default=10.0, help="export interval (otel_ml's default: 10 s)")
    parser.add_argument("--out", default="gateway")
    parser.add_argument("--faults", default="", help="comma list: receiver down, gateway restart, ...")
    parser.add_argument("--fault-workers", type=int, default=300)
    parser.add_argument("--outage", type=float, default=120.0)
    parser.add_argument("--fit-rounds", type=int, default=0, help="rounds of the stalled-collector fit (0: skip)")
    parser.add_argument(
        "--receiver",
        choices=("auto", "prometheus", "sink"),
        default="auto",
        help="remote-write receiver: Prometheus, the counting sink (bench/rwsink), or auto (sink from 1,000 workers)",
    )
    args = parser.parse_args()
    command = "python bench/bench_gateway.py " + " ".join(sys.argv[1:])
    cap = capture(8)
    templates = (Template.metrics(cap.metrics), Template.traces(cap.traces))
    print(f"template: {templates[0].points} points/export, {len(cap.metrics)} bytes", flush=True)
    sizes = [int(w) for w in args.workers.split(",") if w]
    trials: list[Trial] = []
    faults: list[Fault] = []
    fit = ""

    def save() -> Path:
        """The results so far (rewritten after each trial: a run cut short keeps what it measured)."""
        body = (
            f"Template: one real worker's export, {templates[0].points} OTLP points "
            f"({len(cap.metrics)} bytes) every {args.interval:.0f} s; {args.rounds} rounds, order reversed each "
            f"round; warm-up {args.warmup:.0f} s, measured {args.measure:.0f} s.\n\n"
        )
        if trials:
            body += HEADER + "\n".join(fmt(t) for t in trials) + "\n" + summary(trials)
        if faults:
            body += "\n" + FAULT_HEADER + "\n".join(fmt_fault(f) for f in faults) + "\n"
        body += fit
        path = write(args.out, "One gateway under many workers", command, body)
        path.with_suffix(".json").write_text(json.dumps([t.__dict__ for t in [*trials, *faults]], indent=1))
        return path

    order = [(v, w) for v in args.variants.split(",") for w in sizes]
    for r in range(args.rounds):
        for variant, workers in order if r % 2 == 0 else order[::-1]:
            receiver = receiver_for(workers, args.receiver)
            trial = run_trial(templates, workers, variant, args.warmup, args.measure, args.interval, receiver)
            print(fmt(trial), flush=True)
            trials.append(trial)
            save()
    if args.fit_rounds:
        fit = run_fit_stall(args.fit_rounds)
        save()
    for spec in filter(None, args.faults.split(",")):
        name, _, size = spec.strip().partition("@")
        size_n = int(size or args.fault_workers)
        fault = run_fault(templates, name, size_n, args.outage, args.interval, receiver_for(size_n, args.receiver))
        print(fmt_fault(fault), flush=True)
        faults.append(fault)
        save()
    path = save()
    print(path)


if __name__ == "__main__":
    main()
