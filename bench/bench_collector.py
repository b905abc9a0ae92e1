"""The bundled collector under the telemetry of many simulated workers.

    .venv/bin/python bench/bench_collector.py [--workers 64] [--gpus 8] [--rounds 2]

Each simulated worker is a real OpenTelemetry SDK MeterProvider with its own
resource (service.instance.id, ml.worker.type/index) and OTLP gRPC exporter,
sending over loopback every 10 s (the production export interval):

- training: ml.train.step.duration (10 steps a second), steps, samples,
  epochs, epoch duration, loss (train and validation), a validation metric,
  the learning rate;
- GPUs: for each of ``--gpus`` devices, the eight hw.* instruments as
  observable gauges/counters read at export time, like otel_ml's GPU poller.

The load generator is bounded: one thread records a fixed number of steps per
worker per second, whatever the collector does. For each round, a fresh
collector (collector/otel-collector.yaml) serves a small baseline fleet and
the full fleet, in shuffled order; after a warm-up export its CPU time (from
/proc/<pid>/stat) is measured over two export intervals, and its peak RSS
(VmHWM) and the number of series on its /metrics endpoint (what Prometheus
stores from one scrape) are read. Medians over rounds are reported with the
full fleet's ratio against the baseline fleet.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from _common import interleave, median, write
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from otel_ml._core import semconv as sc
from otel_ml._core.buckets import DURATION_BUCKETS_SECONDS

ROOT = Path(__file__).resolve().parents[1]
BINARY = ROOT / "collector" / "build" / "otelcol-ml"
CONFIG = ROOT / "collector" / "otel-collector.yaml"
EXPORT_MS = 10_000
WARMUP_S = 11.0
MEASURE_S = 20.0
STEPS_PER_SECOND = 10
BASELINE_WORKERS = 8
TICK = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Worker:
    """One simulated training worker: its own resource, provider and OTLP exporter."""

    def __init__(self, index: int, gpus: int, endpoint: str) -> None:
        resource = Resource.create(
            {
                "service.name": "bench-train",
                "service.instance.id": f"worker-{index}",
                sc.ML_WORKER_TYPE: "worker",
                sc.ML_WORKER_INDEX: index,
            }
        )
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=endpoint, insecure=True), export_interval_millis=EXPORT_MS
        )
        self.provider = MeterProvider(resource=resource, metric_readers=[reader])
        meter = self.provider.get_meter("otel_ml.keras", "bench")
        self.attrs = {sc.ML_FRAMEWORK: "keras", sc.ML_MODEL_NAME: "bench_mlp", sc.ML_RUN_NAME: "bench"}
        self.loss_attrs = {sc.PHASE_TRAIN: {**self.attrs, sc.ML_PHASE: sc.PHASE_TRAIN}}
        self.loss_attrs[sc.PHASE_VALIDATION] = {**self.attrs, sc.ML_PHASE: sc.PHASE_VALIDATION}
        self.metric_attrs = {**self.attrs, sc.ML_PHASE: sc.PHASE_VALIDATION, sc.ML_METRIC_NAME: "mae"}
        advice = {"explicit_bucket_boundaries_advisory": list(DURATION_BUCKETS_SECONDS)}
        self.step_duration = meter.create_histogram(sc.METRIC_TRAIN_STEP_DURATION, unit="s", **advice)
        self.epoch_duration = meter.create_histogram(sc.METRIC_TRAIN_EPOCH_DURATION, unit="s", **advice)
        self.steps = meter.create_counter(sc.METRIC_TRAIN_STEPS, unit=sc.UNIT_STEP)
        self.samples = meter.create_counter(sc.METRIC_TRAIN_SAMPLES, unit=sc.UNIT_SAMPLE)
        self.epochs = meter.create_counter(sc.METRIC_TRAIN_EPOCHS, unit=sc.UNIT_EPOCH)
        self.loss = meter.create_gauge(sc.METRIC_TRAIN_LOSS, unit="")
        self.metric = meter.create_gauge(sc.METRIC_TRAIN_METRIC, unit="")
        self.lr = meter.create_gauge(sc.METRIC_TRAIN_LEARNING_RATE, unit="")
        self.rng = random.Random(index)
        # Every simulated job has finished one epoch, so every worker has the same series.
        self.epochs.add(1, self.attrs)
        self.epoch_duration.record(60.0, self.attrs)
        self._gpus = [
            {
                sc.HW_ID: f"GPU-{index:03d}-{g}",
                sc.HW_NAME: "NVIDIA H100 80GB HBM3",
                sc.HW_VENDOR: "NVIDIA",
                sc.HW_TYPE: sc.HW_TYPE_GPU,
                sc.ML_GPU_INDEX: g,
            }
            for g in range(gpus)
        ]
        for name, unit, kind, value in (
            (sc.METRIC_HW_GPU_UTILIZATION, "1", "gauge", 0.8),
            (sc.METRIC_HW_GPU_MEMORY_UTILIZATION, "1", "gauge", 0.6),
            (sc.METRIC_HW_GPU_MEMORY_USAGE, "By", "gauge", 48e9),
            (sc.METRIC_HW_GPU_MEMORY_LIMIT, "By", "gauge", 80e9),
            (sc.METRIC_HW_POWER, "W", "gauge", 550.0),
            (sc.METRIC_HW_TEMPERATURE, "Cel", "gauge", 61.0),
            (sc.METRIC_HW_ENERGY, "J", "counter", 1e6),
            (sc.METRIC_HW_ERRORS, "{error}", "counter", 0.0),
        ):
            if not gpus:
                break
            callback = self._callback(value)
            if kind == "gauge":
                meter.create_observable_gauge(name, [callback], unit=unit)
            else:
                meter.create_observable_counter(name, [callback], unit=unit)

    def _callback(self, value: float) -> Any:
        gpus = self._gpus

        def observe(_options: CallbackOptions) -> list[Observation]:
            return [Observation(value, attrs) for attrs in gpus]

        return observe

    def tick(self, steps: int) -> None:
        """One second of training: ``steps`` steps of 32 samples, gauges refreshed."""
        for _ in range(steps):
            self.step_duration.record(0.08 + 0.02 * self.rng.random(), self.attrs)
        self.steps.add(steps, self.attrs)
        self.samples.add(32 * steps, self.attrs)
        self.loss.set(0.5 * self.rng.random(), self.loss_attrs[sc.PHASE_TRAIN])
        self.loss.set(0.6, self.loss_attrs[sc.PHASE_VALIDATION])
        self.metric.set(0.3, self.metric_attrs)
        self.lr.set(1e-3, self.attrs)


class Fleet:
    """``workers`` simulated workers and the bounded thread that drives them."""

    def __init__(self, workers: int, gpus: int, endpoint: str) -> None:
        self.workers = [Worker(i, gpus, endpoint) for i in range(workers)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_tick = time.monotonic()
        while not self._stop.is_set():
            for worker in self.workers:
                worker.tick(STEPS_PER_SECOND)
            next_tick += 1.0
            self._stop.wait(max(0.0, next_tick - time.monotonic()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for worker in self.workers:
            worker.provider.shutdown(timeout_millis=2000)


class Collector:
    """otelcol-ml on free loopback ports, with /proc readings of its CPU and memory."""

    def __init__(self, workdir: Path) -> None:
        self.grpc, self.metrics = _free_port(), _free_port()
        env = {
            **os.environ,
            "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{self.grpc}",
            "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{_free_port()}",
            "OTELCOL_PROMETHEUS_ENDPOINT": f"127.0.0.1:{self.metrics}",
            "OTELCOL_TRACES_OTLP_ENDPOINT": f"127.0.0.1:{_free_port()}",
            "OTELCOL_TRACES_FILE": str(workdir / "traces.jsonl"),
            "OTELCOL_LOG_LEVEL": "error",
        }
        self.proc = subprocess.Popen(
            [str(BINARY), "--config", str(CONFIG)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.metrics)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError("the collector did not start")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime

    def memory_mib(self, key: str) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        raise KeyError(key)

    def series(self) -> dict[str, int]:
        """Series per family prefix on /metrics (one scrape = what Prometheus stores)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics", timeout=30) as resp:
            text = resp.read().decode()
        counts: dict[str, int] = {"ml_train": 0, "hw": 0, "target_info": 0, "other": 0}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            name = line.split("{", 1)[0].split(" ", 1)[0]
            key = "ml_train" if name.startswith("ml_train") else "hw" if name.startswith("hw_") else name
            counts[key if key in counts else "other"] += 1
        counts["total"] = sum(counts.values())
        return counts

    def stop(self) -> None:
        os.kill(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=15)


def measure(
    workers: int,
    gpus: int,
    results: dict[str, list[dict[str, Any]]],
    key: str,
    warmup: float = WARMUP_S,
    window: float = MEASURE_S,
) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        collector = Collector(Path(tmp))
        fleet = Fleet(workers, gpus, f"127.0.0.1:{collector.grpc}")
        try:
            time.sleep(warmup)
            cpu0, t0 = collector.cpu_seconds(), time.monotonic()
            time.sleep(window)
            cpu = (collector.cpu_seconds() - cpu0) / (time.monotonic() - t0)
            row = {
                "cpu_pct": 100 * cpu,
                "rss_mib": collector.memory_mib("VmRSS"),
                "peak_rss_mib": collector.memory_mib("VmHWM"),
                **collector.series(),
            }
        finally:
            fleet.close()
            collector.stop()
    results[key].append(row)
    print(f"  {key}: {row}", file=sys.stderr)
    return float(row["cpu_pct"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not BINARY.exists():
        sys.exit("collector/build/otelcol-ml is missing: run `bash collector/build.sh` first")
    full, base = f"{args.workers} workers x {args.gpus} GPUs", f"{BASELINE_WORKERS} workers x {args.gpus} GPUs"
    results: dict[str, list[dict[str, Any]]] = {full: [], base: []}
    interleave(
        {
            full: lambda: measure(args.workers, args.gpus, results, full),
            base: lambda: measure(BASELINE_WORKERS, args.gpus, results, base),
        },
        rounds=args.rounds,
    )
    # Series growth with GPUs: one short look at a fleet without GPUs.
    results["no GPUs"] = []
    measure(BASELINE_WORKERS, 0, results, "no GPUs", warmup=11.0, window=1.0)
    write("collector", "Bundled collector under simulated workers", _command(args), _report(args, results, full, base))


def _command(args: argparse.Namespace) -> str:
    flags = f"--workers {args.workers} --gpus {args.gpus} --rounds {args.rounds}"
    return f".venv/bin/python bench/bench_collector.py {flags}"


def _report(args: argparse.Namespace, results: dict[str, list[dict[str, Any]]], full: str, base: str) -> str:
    def med(key: str, field: str) -> float:
        return median([float(r[field]) for r in results[key]])

    lines = [
        f"Export interval {EXPORT_MS // 1000} s, {STEPS_PER_SECOND} steps/s per worker, OTLP gRPC over loopback; "
        f"collector/otel-collector.yaml; CPU over {MEASURE_S:.0f} s after a {WARMUP_S:.0f} s warm-up, "
        f"medians of {args.rounds} interleaved rounds, a fresh collector each. CPU time comes from "
        f"/proc in clock ticks ({1000 // TICK} ms): a resolution of {100 / TICK / MEASURE_S:.2f} % of a core.\n",
        "| fleet | collector CPU (% of one core) | RSS (MiB) | peak RSS (MiB) | series on /metrics |",
        "|---|---|---|---|---|",
    ]
    for key in (base, full):
        lines.append(
            f"| {key} | {med(key, 'cpu_pct'):.1f} | {med(key, 'rss_mib'):.0f} | {med(key, 'peak_rss_mib'):.0f} "
            f"| {med(key, 'total'):.0f} |"
        )
    ratio_workers = args.workers / BASELINE_WORKERS
    lines += [
        "",
        f"Ratios {full} / {base} ({ratio_workers:.0f}x the workers): "
        f"CPU {med(full, 'cpu_pct') / med(base, 'cpu_pct'):.2f}x, "
        f"peak RSS {med(full, 'peak_rss_mib') / med(base, 'peak_rss_mib'):.2f}x, "
        f"series {med(full, 'total') / med(base, 'total'):.2f}x.",
        "",
        "## How series grow",
        "",
    ]
    nogpu = results["no GPUs"][0]
    per_worker_train = nogpu["ml_train"] / BASELINE_WORKERS
    full_row = results[full][0]
    per_gpu = full_row["hw"] / (args.workers * args.gpus) if args.gpus else 0.0
    lines += [
        f"- training series per worker: {per_worker_train:g} "
        "(step and epoch duration histograms: 22 buckets + +Inf + _sum + _count each; steps, samples, epochs; "
        "loss train/validation; one validation metric; learning rate)",
        f"- GPU series per GPU: {per_gpu:.0f} (the eight hw.* instruments)",
        "- plus one target_info per worker",
        f"- so series = workers x ({per_worker_train:.0f} + {per_gpu:.0f} x GPUs + 1): linear in workers and "
        "in GPUs per worker. Each extra Keras metric adds 1 per phase, each anomaly kind seen adds 1; "
        "an inference model adds 25 (duration) + 15 (batch size) + 1 (in flight) per service, and "
        "25 more for its warm-up runs and for each error.type seen.",
        f"- measured: {nogpu['total']} series for {BASELINE_WORKERS} workers without GPUs, "
        f"{full_row['total']} for {full}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
