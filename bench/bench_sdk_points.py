"""What the OpenTelemetry SDK alone charges per observed data point, by attributes per point.

A GPU collection is mostly the SDK's work on each data point (bench_gpu.py).
This benchmark has no otel_ml and no NVML in it: 24 observable gauges whose
callbacks hand the SDK prebuilt Observations, 40 data points per "device" (the
shape of a GPU with every signal on), with 1, 4 or 10 attributes per point,
collected through an InMemoryMetricReader. Rounds are interleaved and medians
reported, per device, so the figures compare directly with bench_gpu.py's:
the 1-attribute row is the floor no attribute layout can go under.

    .venv/bin/python bench/bench_sdk_points.py [--devices 8] [--rounds 9] [--collections 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

POINTS = 40
INSTRUMENTS = 24


def _reader(devices: int, attributes: int) -> InMemoryMetricReader:
    """A provider whose instruments observe POINTS points per device, each with ``attributes`` attributes."""
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("sdk_points")
    for instrument in range(INSTRUMENTS):
        # points of this instrument: POINTS per device spread over the instruments
        per_device = [p for p in range(POINTS) if p % INSTRUMENTS == instrument]
        observations = [
            Observation(1.5, {"hw.id": f"GPU-{d}", **{f"a{k}": f"v{p}-{k}" for k in range(1, attributes)}})
            for d in range(devices)
            for p in per_device
        ]
        meter.create_observable_gauge(f"g{instrument}", [_constant(observations)])
    return reader


def _constant(observations: list[Observation]) -> Callable[[CallbackOptions], Iterable[Observation]]:
    return lambda options: observations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--collections", type=int, default=20)
    args = parser.parse_args()
    readers = {n: _reader(args.devices, n) for n in (1, 4, 10)}
    times: dict[int, list[float]] = {n: [] for n in readers}
    for reader in readers.values():
        reader.get_metrics_data()
    load = os.getloadavg()[0]
    for _ in range(args.rounds):  # interleaved
        for n, reader in readers.items():
            start = time.thread_time()
            for _ in range(args.collections):
                reader.get_metrics_data()
            times[n].append((time.thread_time() - start) / args.collections / args.devices * 1e3)
    after = os.getloadavg()[0]
    print(f"SDK only, {POINTS} data points per device, {args.devices} devices; 1-min load {load:.1f} -> {after:.1f}")
    print("| attributes per point | CPU ms/device | µs per data point |")
    print("|---|---|---|")
    for n, values in times.items():
        ms = statistics.median(values)
        print(f"| {n} | {ms:.4f} | {ms * 1e3 / POINTS:.1f} |")


if __name__ == "__main__":
    main()
