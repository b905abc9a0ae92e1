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
the saving. A third side is otel_ml with ``gpu_identity_on_series`` (each
GPU's identity attributes on every series, as before they moved to
``hw.gpu.info``), interleaved in the same rounds: what the option costs, and
the previous shape's cost measured beside the current one.

NVML here is the tests' fake (tests/fake_nvml.py): a Python call that returns
at once, so the figures are otel_ml's own overhead. A second pass adds a
simulated 10 us per NVML call (a busy wait) to show what the number of NVML
calls costs; on a real GPU, run ``--real`` (every device on the host): it also lists which
signals the real devices reported.

    .venv/bin/python bench/bench_gpu.py [--devices 8] [--rounds 15] [--real] [--out bench/results/gpu.md]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator
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


VARIANTS: dict[str, dict[str, Any]] = {"ours": {}, "identity": {"gpu_identity_on_series": True}}
"""otel_ml's configurations measured in each round: the default, and identity on every series."""


def _fake_gpus(devices: int) -> None:
    fake_nvml.reset(
        [
            fake_nvml.FakeGpu(
                f"GPU-{i:08d}-0000-0000-0000-000000000000",
                processes=[(os.getpid(), 1 << 30)],
                process_samples=_FreshSamples(),  # type: ignore[arg-type]
            )
            for i in range(devices)
        ]
    )


@contextlib.contextmanager
def _instrumented(nvml: Any, provider: MeterProvider, options: dict[str, Any]) -> Iterator[Any]:
    """otel_ml instrumented on ``provider`` (its instruments persist across rounds), yielding the sampler."""
    if GpuInstrumentor().is_instrumented_by_opentelemetry:
        GpuInstrumentor().uninstrument()
    GpuInstrumentor().instrument(meter_provider=provider, nvml=nvml, gpu_all_devices=True, **options)
    try:
        sampler = GpuInstrumentor().sampler
        assert sampler is not None, "no GPU to measure"
        yield sampler
    finally:
        GpuInstrumentor().uninstrument()


def _time(reader: InMemoryMetricReader, collections: int) -> tuple[float, float]:
    """(wall, CPU) seconds per collection; CPU is this thread's, which a busy shared machine inflates less."""
    start, cpu = time.perf_counter(), time.thread_time()
    for _ in range(collections):
        reader.get_metrics_data()
    return (time.perf_counter() - start) / collections, (time.thread_time() - cpu) / collections


def _shape(reader: InMemoryMetricReader, devices: int) -> dict[str, Any]:
    """One collection's data points per device, attributes per point, and the metric names reported."""
    data = reader.get_metrics_data()
    points = [
        (m.name, len(p.attributes or {}))
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        for p in m.data.data_points
    ]
    return {
        "points": len(points) / devices,
        "attributes": sum(n for _, n in points) / len(points),
        "reported": sorted({name for name, _ in points}),
    }


def _measure(nvml: Any, devices: int, rounds: int, collections: int) -> dict[str, Any]:
    if nvml is not None:
        _fake_gpus(devices)
    readers = {name: InMemoryMetricReader() for name in (*VARIANTS, "naive")}
    providers = {name: MeterProvider(metric_readers=[reader]) for name, reader in readers.items()}
    module = nvml if nvml is not None else __import__("pynvml")
    module.nvmlInit()  # the naive baseline's: otel_ml's own nvmlInit/nvmlShutdown pair comes and goes each round
    _naive(providers["naive"].get_meter("naive"), module)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in readers}
    reads: list[float] = []
    shapes: dict[str, dict[str, Any]] = {}
    ours_calls = naive_calls = 0
    for round_ in range(rounds + 1):  # interleaved; round 0 warms up and counts, untimed
        for name, options in VARIANTS.items():
            with _instrumented(nvml, providers[name], options) as sampler:
                devices = len(sampler.devices)
                _time(readers[name], 3)  # GPM's second sample, first-seen attribute sets
                if round_ == 0:
                    fake_nvml.state.calls.clear()
                    shapes[name] = _shape(readers[name], devices)
                    ours_calls = sum(fake_nvml.state.calls.values())
                    continue
                times[name].append(_time(readers[name], collections))
                if name == "ours":
                    start = time.perf_counter()
                    for _ in range(collections):
                        sampler.snapshot(1 << 30)  # a bit no instrument uses: every call reads every device
                    reads.append((time.perf_counter() - start) / collections)
        if round_ == 0:
            _time(readers["naive"], 3)
            fake_nvml.state.calls.clear()
            readers["naive"].get_metrics_data()
            naive_calls = sum(fake_nvml.state.calls.values())
            continue
        times["naive"].append(_time(readers["naive"], collections))
    module.nvmlShutdown()
    wall = {name: statistics.median(w for w, _ in t) * 1e3 / devices for name, t in times.items()}
    cpu = {name: statistics.median(c for _, c in t) * 1e3 / devices for name, t in times.items()}
    return {
        "devices": devices,
        "wall": wall,
        "cpu": cpu,
        "read_ms": statistics.median(reads) * 1e3 / devices,
        "ours_calls": ours_calls / devices if nvml is not None else None,
        "naive_calls": naive_calls / devices if nvml is not None else None,
        "shapes": shapes,
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
    shapes: dict[str, dict[str, Any]] = {}
    for label, nvml in cases:
        r = _measure(nvml, args.devices, args.rounds, args.collections if nvml is fake_nvml else 10)
        calls = f"{r['ours_calls']:.0f} | {r['naive_calls']:.0f}" if r["ours_calls"] is not None else "n/a | n/a"
        wall, cpu = r["wall"], r["cpu"]
        rows.append(
            f"| {label} | {r['devices']} | {wall['ours']:.4f} | {cpu['ours']:.4f} | {wall['identity']:.4f} | "
            f"{cpu['identity']:.4f} | {wall['ours'] / wall['identity']:.2f} | {wall['naive']:.4f} | "
            f"{cpu['naive']:.4f} | {wall['naive'] / wall['ours']:.1f}x | {r['read_ms']:.4f} | {calls} |"
        )
        shapes = r["shapes"]
    reported = shapes["ours"]["reported"]
    report = "\n".join(
        [
            "# GPU collection cost per device",
            "",
            f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
            f"- machine: {os.cpu_count()} CPUs (nproc), {_cpu()}; Python {platform.python_version()}; "
            f"1-min load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (shared machine)",
            f"- command: `.venv/bin/python bench/bench_gpu.py {' '.join(sys.argv[1:])}`".rstrip(),
            f"- method: {args.rounds} interleaved rounds; each round times full SDK collections of otel_ml "
            f"(every signal on: {len(reported)} metrics reported), of otel_ml with `gpu_identity_on_series` "
            "(identity attributes on every series, the shape before `hw.gpu.info`) and of the naive baseline "
            "(the 9 basic instruments), and otel_ml's NVML snapshot alone; medians divided by the device count",
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
            *(
                f"- {what}: {shapes[name]['points']:.0f} data points per device, "
                f"{shapes[name]['attributes']:.2f} attributes per data point"
                for name, what in (("ours", "otel_ml"), ("identity", "otel_ml, identity on every series"))
            ),
            "",
            "| NVML | devices | otel_ml ms/device | otel_ml CPU ms/device | identity on every series ms/device "
            "| its CPU ms/device | otel_ml / identity on every series (wall) | naive ms/device "
            "| naive CPU ms/device | naive/otel_ml (wall) | otel_ml NVML read only ms/device "
            "| NVML calls/device otel_ml | naive |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
