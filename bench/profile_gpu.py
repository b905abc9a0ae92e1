"""Where a GPU collection's time goes: cProfile of otel_ml collections on the fake NVML, grouped.

Eight fake GPUs with every signal on, as in bench_gpu.py; after a warm-up,
``--collections`` SDK collections run under cProfile and the time is split
into the SDK's attribute cleaning and hashing (cumulative, the recursive calls
included), otel_ml's and the fake NVML's own code, and the rest of the SDK's
per-data-point work. cProfile inflates small calls, so the shares are a
guide; bench_gpu.py and bench_sdk_points.py give the unprofiled figures.

    .venv/bin/python bench/profile_gpu.py [--collections 30] [--identity-on-series]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from pathlib import Path

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_gpu import _fake_gpus
from otel_ml.gpu import GpuInstrumentor
from tests import fake_nvml

DEVICES = 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collections", type=int, default=30)
    parser.add_argument("--identity-on-series", action="store_true", help="gpu_identity_on_series=True")
    args = parser.parse_args()
    _fake_gpus(DEVICES)
    reader = InMemoryMetricReader()
    GpuInstrumentor().instrument(
        meter_provider=MeterProvider(metric_readers=[reader]),
        nvml=fake_nvml,
        gpu_all_devices=True,
        gpu_identity_on_series=args.identity_on_series,
    )
    try:
        for _ in range(5):
            reader.get_metrics_data()
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(args.collections):
            reader.get_metrics_data()
        profile.disable()
    finally:
        GpuInstrumentor().uninstrument()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    total = sum(row[2] for row in stats.values())
    cumulative = {key[2]: row[3] for key, row in stats.items()}
    clean, hashing = cumulative["_clean_attribute_value"], cumulative["_hash_attributes"]
    ours = sum(row[2] for key, row in stats.items() if "/otel_ml/" in key[0] or "fake_nvml" in key[0])
    per_device = total / args.collections / DEVICES * 1e3
    print(f"{args.collections} collections x {DEVICES} devices: {per_device:.3f} ms/device under cProfile")
    print("| where | share |")
    print("|---|---|")
    for what, seconds in (
        ("SDK attribute cleaning (_clean_attribute_value)", clean),
        ("SDK attribute hashing (_hash_attributes)", hashing),
        ("otel_ml and the fake NVML (own time)", ours),
        ("rest of the SDK: Measurement, consume, exemplars, aggregation, collect", total - clean - hashing - ours),
    ):
        print(f"| {what} | {seconds / total:.0%} |")


if __name__ == "__main__":
    main()
