"""Where otel_ml's per-step time goes inside Keras's hooks: the whole hooks, the loss read, the flushes.

Times otel_ml's own ``on_train_batch_begin``/``on_train_batch_end`` from the
inside, so that it needs no quiet machine: other tenants slow every variant of
``bench_keras.py`` alike and bury a few tens of µs in noise.

    python bench/keras_hook_cost.py [--flavour keras|tf_keras] [--fits 5]
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

import otel_ml
import otel_ml._training.loss as loss_module
from otel_ml._training.fit import FitRun
from otel_ml._training.steps import PendingSteps
from otel_ml.distro.endpoint import OtelMLPrometheusMetricReader, SlowStepBuffer

STEPS, BATCH = 300, 64


def _timing(owner: Any, name: str, into: list[int]) -> None:
    original = getattr(owner, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter_ns()
        try:
            return original(*args, **kwargs)
        finally:
            into.append(time.perf_counter_ns() - start)

    setattr(owner, name, timed)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--flavour", choices=["keras", "tf_keras"], default="tf_keras")
    parser.add_argument("--fits", type=int, default=5)
    args = parser.parse_args()
    k = importlib.import_module(args.flavour)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH * STEPS, 64)).astype("float32")
    y = rng.normal(size=(BATCH * STEPS, 1)).astype("float32")
    model = k.Sequential([k.Input((64,)), k.layers.Dense(384, activation="relu"), k.layers.Dense(1)])
    model.compile("sgd", "mse")
    model.fit(x[: BATCH * 20], y[: BATCH * 20], batch_size=BATCH, verbose=0)
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SlowStepBuffer())
    reader = OtelMLPrometheusMetricReader(start_server=False)
    otel_ml.instrument(meter_provider=MeterProvider(metric_readers=[reader]), tracer_provider=tracer_provider)
    hooks: list[int] = []
    reads: list[int] = []
    flushes: list[int] = []
    _timing(FitRun, "on_train_batch_begin", hooks)
    _timing(FitRun, "on_train_batch_end", hooks)
    _timing(loss_module, "as_float", reads)
    _timing(PendingSteps, "flush", flushes)
    rows = []
    for _ in range(args.fits):
        for found in (hooks, reads, flushes):
            found.clear()
        model.fit(x, y, batch_size=BATCH, verbose=0, shuffle=False)
        rows.append([sum(found) / STEPS / 1000 for found in (hooks, reads, flushes)])
    print(f"{args.flavour}: µs per step (median of {args.fits} fits of {STEPS} steps)")
    for i, what in enumerate(("otel_ml's hooks in all", "of which the loss read", "of which the flushes")):
        print(f"  {what}: {statistics.median(row[i] for row in rows):.1f}")


if __name__ == "__main__":
    main()
