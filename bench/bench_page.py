"""What the live page costs a Keras ``fit`` that nobody watches: its history thread, on against off.

Variants, interleaved in shuffled order each round, same model and data (the
model of bench/bench_keras.py): plain fit; fit under otel_ml with the
endpoint's server off (bench_keras.py's set-up); with the server on and the
page's history sampling at its default interval (5 s); and sampling every
second (five times the default work). Nobody opens the page: this is the
price of having it.

    python bench/bench_page.py [--rounds 7] [--steps 1500] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
import keras
import numpy as np
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

import otel_ml
from otel_ml.distro.endpoint import OtelMLPrometheusMetricReader, SlowStepBuffer
from otel_ml.distro.endpoint._history import MetricHistory
from otel_ml.distro.endpoint._page import page_data

BATCH = 64


def _provider(page_interval: str | None) -> tuple[MeterProvider, OtelMLPrometheusMetricReader]:
    if page_interval is None:
        reader = OtelMLPrometheusMetricReader(start_server=False)
    else:
        os.environ["OTEL_ML_PAGE_INTERVAL"] = page_interval
        reader = OtelMLPrometheusMetricReader(host="127.0.0.1", port=0)
        del os.environ["OTEL_ML_PAGE_INTERVAL"]
    return MeterProvider(metric_readers=[reader]), reader


def _ms(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=1500, help="timed steps per run")
    parser.add_argument("--width", type=int, default=384, help="hidden width (sets the step time)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="what a step's time is")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH * args.steps, 64)).astype("float32")
    y = rng.normal(size=(BATCH * args.steps, 1)).astype("float32")
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(args.width, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile("sgd", "mse")
    model.fit(x[: BATCH * 20], y[: BATCH * 20], batch_size=BATCH, verbose=0)  # trace once

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SlowStepBuffer())
    providers = {name: _provider(interval) for name, interval in (("off", None), ("5s", "5"), ("1s", "1"))}
    clock = time.perf_counter if args.clock == "wall" else time.process_time

    def timed() -> float:
        start = clock()
        model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
        return (clock() - start) / args.steps * 1e6

    def with_otel_ml(which: str) -> float:
        otel_ml.instrument(meter_provider=providers[which][0], tracer_provider=tracer_provider)
        try:
            return timed()
        finally:
            otel_ml.uninstrument()

    variants = {
        "plain": timed,
        "otel_ml_server_off": lambda: with_otel_ml("off"),
        "otel_ml_page_5s": lambda: with_otel_ml("5s"),
        "otel_ml_page_1s": lambda: with_otel_ml("1s"),
    }
    for fn in variants.values():
        fn()
    samples = _common.interleave(variants, args.rounds)
    samples_taken = {
        name: len(reader.history.snapshot()[0]) for name, (_, reader) in providers.items() if reader.history
    }
    # The work behind those figures, on the Keras series the fits left: one collection (what the
    # history thread does each interval), and one /page/data over a full hour (only when the page asks).
    reader = providers["5s"][1]
    collect_ms = _common.median([_ms(lambda: list(reader.registry.collect())) for _ in range(30)])
    full = MetricHistory(5.0, 720)
    families = list(reader.registry.collect())
    for i in range(720):
        full.record(families, now=float(i))
    series_kept = len(full.snapshot()[1])
    data_ms = _common.median([_ms(lambda: json.dumps(page_data(full, SlowStepBuffer(4)))) for _ in range(5)])
    for provider, _ in providers.values():
        provider.shutdown()
    base = _common.median(samples["otel_ml_server_off"])
    plain = _common.median(samples["plain"])
    rows = ["| variant | median µs/step | ratio to otel_ml_server_off | ratio to plain |", "|---|---:|---:|---:|"]
    for name, values in samples.items():
        med = _common.median(values)
        rows.append(f"| {name} | {med:.1f} | {med / base:.3f} | {med / plain:.3f} |")
    paired = {
        name: _common.median([a / b for a, b in zip(samples[name], samples["otel_ml_server_off"], strict=True)])
        for name in ("otel_ml_page_5s", "otel_ml_page_1s")
    }
    ratio = _common.median(samples["otel_ml_page_5s"]) / base
    body = (
        f"Model: Dense(64→{args.width}→1), batch {BATCH}, {args.steps} timed steps per run, "
        f"{args.rounds} interleaved rounds, medians; clock: {args.clock} "
        f"({'process CPU time, all threads' if args.clock == 'cpu' else 'wall time'}); "
        f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores. "
        f"Samples the history took over the whole run: {samples_taken}.\n\n" + "\n".join(rows) + "\n\n"
        f"- target page at its default interval / server off ≤ 1.01 (nothing measurable): **{ratio:.3f}** "
        f"({'met' if ratio <= 1.01 else 'NOT met'}); median of the per-round ratios "
        f"{paired['otel_ml_page_5s']:.3f} (5 s), {paired['otel_ml_page_1s']:.3f} (1 s)\n\n"
        f"One collection of the endpoint's registry (each history sample): {collect_ms:.2f} ms median; "
        f"one /page/data over a full hour (720 samples, {series_kept} series) built and encoded: "
        f"{data_ms:.1f} ms median (only while the page is open, every 5 s at most).\n\n"
        "Raw samples (µs/step):\n\n"
        + "\n".join(f"- {k}: {', '.join(f'{v:.1f}' for v in vals)}" for k, vals in samples.items())
        + "\n"
    )
    path = _common.write(
        f"page_{args.clock}",
        "Live page: cost when nobody opens it",
        "python bench/bench_page.py " + " ".join(sys.argv[1:]),
        body,
    )
    print(path.read_text())


if __name__ == "__main__":
    main()
