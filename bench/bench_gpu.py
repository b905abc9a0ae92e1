"""Cost of one GPU collection per device: otel_ml's snapshot against the naive per-metric reads.

The naive baseline is what common pynvml snippets do: every metric's callback
walks the devices and, for each, gets the handle, the UUID and the name again,
builds its attribute dict, and makes its own read (so the memory metrics read
the memory info three times). Both sides export the same 9 instruments through
a real SDK collection (InMemoryMetricReader); rounds are interleaved and
medians reported. otel_ml runs with every signal on (the fake devices support
all of them: clocks, throttle reasons, field values, GPM, per-process
utilisation with a fresh sample each collection, the XID watcher thread); the
naive baseline reads the 9 basic instruments only, so the ratio understates
the saving.

NVML here is the tests' fake (tests/fake_nvml.py): a Python call that returns
at once, so the figures are otel_ml's own overhead. A second pass adds a
simulated 10 us per NVML call (a busy wait) to show what the number of NVML
calls costs; on a real GPU, run ``--real`` (every device on the host): it also lists which
signals the real devices reported.

    .venv/bin/python bench/bench_gpu.py [--devices 8] [--rounds 15] [--real] [--out bench/results/gpu.md]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from otel_ml.gpu import GpuInstrumentor  # noqa: E402
from tests import fake_nvml  # noqa: E402


class _Slow(ModuleType):
    """The fake NVML with a busy wait of ``delay`` seconds in every device call."""

    def __init__(self, delay: float) -> None:
        super().__init__("slow_fake_nvml")
        self._delay = delay

    def __getattr__(self, name: str) -> Any:
        target = getattr(fake_nvml, name)
        if not name.startswith("nvmlDevice") or not callable(target):
            return target
        delay = self._delay

        def call(*args: Any) -> Any:
            end = time.perf_counter() + delay
            while time.perf_counter() < end:
                pass
            return target(*args)

        return call


def _naive(meter: Meter, nvml: Any) -> None:
    """The baseline: one full NVML call sequence per metric and device, attributes rebuilt each time."""

    def per_device(read: Callable[[Any], Any]) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            driver = nvml.nvmlSystemGetDriverVersion()
            for index in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                attrs = {
                    "hw.id": nvml.nvmlDeviceGetUUID(handle),
                    "hw.model": nvml.nvmlDeviceGetName(handle),
                    "hw.driver_version": driver,
                    "hw.type": "gpu",
                    "hw.vendor": "NVIDIA",
                    "ml.gpu.index": index,
                    "hw.name": f"gpu{index}",
                }
                try:
                    for value, extra in read(handle):
                        yield Observation(value, {**attrs, **extra})
                except nvml.NVMLError:
                    continue

        return callback

    def memory(part: str) -> Callable[[Any], Any]:
        return lambda h: [(getattr(nvml.nvmlDeviceGetMemoryInfo(h), part), {})]

    def ecc(h: Any) -> Any:
        return [
            (nvml.nvmlDeviceGetTotalEccErrors(h, kind, nvml.NVML_VOLATILE_ECC), {"error.type": name})
            for kind, name in ((0, "ecc_corrected"), (1, "ecc_uncorrected"))
        ]

    pid = os.getpid()
    g, u, c = meter.create_observable_gauge, meter.create_observable_up_down_counter, meter.create_observable_counter
    g("hw.gpu.utilization", [per_device(lambda h: [(nvml.nvmlDeviceGetUtilizationRates(h).gpu / 100, {})])])
    g(
        "hw.gpu.memory.utilization",
        [per_device(lambda h: [(nvml.nvmlDeviceGetMemoryInfo(h).used / nvml.nvmlDeviceGetMemoryInfo(h).total, {})])],
    )
    u("hw.gpu.memory.usage", [per_device(memory("used"))])
    u("hw.gpu.memory.limit", [per_device(memory("total"))])
    g("hw.power", [per_device(lambda h: [(nvml.nvmlDeviceGetPowerUsage(h) / 1000, {})])])
    c("hw.energy", [per_device(lambda h: [(nvml.nvmlDeviceGetTotalEnergyConsumption(h) / 1000, {})])])
    g("hw.temperature", [per_device(lambda h: [(nvml.nvmlDeviceGetTemperature(h, 0), {})])])
    c("hw.errors", [per_device(ecc)])
    u(
        "ml.gpu.process.memory.usage",
        [
            per_device(
                lambda h: [
                    (p.usedGpuMemory, {"process.pid": p.pid})
                    for p in nvml.nvmlDeviceGetComputeRunningProcesses(h)
                    if p.pid == pid
                ]
            )
        ],
    )


class _FreshSamples:
    """Per-process utilisation samples stamped now, so every collection has a new one to report."""

    def __iter__(self) -> Any:
        return iter([(os.getpid(), time.monotonic_ns() // 1000, 42)])


def _setup(nvml: Any, devices: int) -> tuple[InMemoryMetricReader, InMemoryMetricReader]:
    if nvml is not None:
        gpus = [
            fake_nvml.FakeGpu(
                f"GPU-{i:08d}-0000-0000-0000-000000000000",
                processes=[(os.getpid(), 1 << 30)],
                process_samples=_FreshSamples(),  # type: ignore[arg-type]
            )
            for i in range(devices)
        ]
        fake_nvml.reset(gpus)
    ours, naive = InMemoryMetricReader(), InMemoryMetricReader()
    if GpuInstrumentor().is_instrumented_by_opentelemetry:
        GpuInstrumentor().uninstrument()
    GpuInstrumentor().instrument(meter_provider=MeterProvider(metric_readers=[ours]), nvml=nvml, gpu_all_devices=True)
    module = nvml if nvml is not None else __import__("pynvml")
    _naive(MeterProvider(metric_readers=[naive]).get_meter("naive"), module)
    return ours, naive


def _time(reader: InMemoryMetricReader, collections: int) -> tuple[float, float]:
    """(wall, CPU) seconds per collection; CPU is this thread's, which a busy shared machine inflates less."""
    start, cpu = time.perf_counter(), time.thread_time()
    for _ in range(collections):
        reader.get_metrics_data()
    return (time.perf_counter() - start) / collections, (time.thread_time() - cpu) / collections


def _measure(nvml: Any, devices: int, rounds: int, collections: int) -> dict[str, Any]:
    ours, naive = _setup(nvml, devices)
    sampler = GpuInstrumentor().sampler
    assert sampler is not None, "no GPU to measure"
    devices = len(sampler.devices)
    for reader in (ours, naive):
        _time(reader, 3)  # warm up
    fake_nvml.state.calls.clear()
    ours.get_metrics_data()
    ours_calls = sum(fake_nvml.state.calls.values())
    fake_nvml.state.calls.clear()
    naive.get_metrics_data()
    naive_calls = sum(fake_nvml.state.calls.values())
    a: list[tuple[float, float]] = []
    b: list[tuple[float, float]] = []
    reads: list[float] = []
    for _ in range(rounds):  # interleaved
        a.append(_time(ours, collections))
        b.append(_time(naive, collections))
        start = time.perf_counter()
        for _ in range(collections):
            sampler.snapshot(1 << 30)  # a bit no instrument uses: every call reads every device
        reads.append((time.perf_counter() - start) / collections)
    data = ours.get_metrics_data()
    reported = sorted(
        {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics if m.data.data_points}
    )
    GpuInstrumentor().uninstrument()
    ours_ms, naive_ms = (statistics.median(w for w, _ in t) * 1e3 / devices for t in (a, b))
    ours_cpu, naive_cpu = (statistics.median(c for _, c in t) * 1e3 / devices for t in (a, b))
    return {
        "devices": devices,
        "ours_ms": ours_ms,
        "naive_ms": naive_ms,
        "ratio": naive_ms / ours_ms,
        "ours_cpu": ours_cpu,
        "naive_cpu": naive_cpu,
        "read_ms": statistics.median(reads) * 1e3 / devices,
        "ours_calls": ours_calls / devices if nvml is not None else None,
        "naive_calls": naive_calls / devices if nvml is not None else None,
        "reported": reported,
    }


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--collections", type=int, default=100)
    parser.add_argument("--real", action="store_true", help="measure the real NVML (every GPU on the host)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    cases = (
        [("real NVML", None)]
        if args.real
        else [
            ("fake NVML (no call latency)", fake_nvml),
            ("fake NVML + 10 us simulated per device call", _Slow(10e-6)),
        ]
    )
    load_before = os.getloadavg()[0]
    rows = []
    reported: list[str] = []
    for label, nvml in cases:
        r = _measure(nvml, args.devices, args.rounds, args.collections if nvml is fake_nvml else 10)
        calls = f"{r['ours_calls']:.0f} | {r['naive_calls']:.0f}" if r["ours_calls"] is not None else "n/a | n/a"
        rows.append(
            f"| {label} | {r['devices']} | {r['ours_ms']:.4f} | {r['ours_cpu']:.4f} | {r['naive_ms']:.4f} | "
            f"{r['naive_cpu']:.4f} | {r['ratio']:.1f}x | {r['read_ms']:.4f} | {calls} |"
        )
        reported = r["reported"]
    report = "\n".join(
        [
            "# GPU collection cost per device",
            "",
            f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
            f"- machine: {os.cpu_count()} CPUs (nproc), {_cpu()}; Python {platform.python_version()}; "
            f"1-min load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (shared machine)",
            f"- command: `.venv/bin/python bench/bench_gpu.py {' '.join(sys.argv[1:])}`".rstrip(),
            f"- method: {args.rounds} interleaved rounds; each round times full SDK collections of otel_ml "
            f"(every signal on: {len(reported)} metrics reported) and of the naive baseline (the 9 basic "
            "instruments), and otel_ml's NVML snapshot alone; medians divided by the device count",
            "- target: <= 1 ms per device per collection with every signal on; XID watching adds no "
            "per-collection cost (a thread waits on NVML events)",
            *(
                []
                if args.real
                else [
                    "- real GPU: not measured in this run (the fake only); run `--real` on a GPU "
                    "machine, which this benchmark has not yet had"
                ]
            ),
            f"- signals reported: {', '.join(reported)}",
            "",
            "| NVML | devices | otel_ml ms/device | otel_ml CPU ms/device | naive ms/device | naive CPU ms/device "
            "| naive/otel_ml (wall) | otel_ml NVML read only ms/device | NVML calls/device otel_ml | naive |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
