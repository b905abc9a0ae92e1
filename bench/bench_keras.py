"""Per-step overhead of otel_ml on Keras ``fit``, against plain fit and the usual alternatives.

Variants, interleaved in shuffled order each round, same model and data:
plain fit; fit under otel_ml (embedded reader + slow-step buffer, as the
default set-up); fit with ``TensorBoard(update_freq='batch')``; fit with a
minimal prometheus_client callback (gauge.set + summary.observe per batch);
and plain / otel_ml again with the same data as a ``tf.data`` pipeline
(``from_tensor_slices().batch()``), the input whose batch size Keras does
not declare (otel_ml then reads Keras's own loss count, at most every 100 ms).

``--flavour tf_keras`` measures Keras 2 instead (its own section of the same
results file; no prometheus_client variant, whose callback is a Keras 3 one).

    python bench/bench_keras.py [--rounds 9] [--steps 300] [--clock wall|cpu] [--flavour keras|tf_keras]

``--clock cpu`` times each fit by the CPU time of the whole process (all
threads) instead of the wall clock: on a machine shared with other work, wall
time measures the neighbours as much as the fit, CPU time mostly what the fit
itself costs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
import keras
import numpy as np
import prometheus_client
import tensorflow as tf
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

import otel_ml
from otel_ml.distro.endpoint import OtelMLPrometheusMetricReader, SlowStepBuffer

BATCH = 64
TF_KERAS_SECTION = "\n## Keras 2 (`tf_keras`)\n\n"


class PromCallback(keras.callbacks.Callback):
    """What tutorials write: a gauge for the loss and a summary for the step time."""

    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        super().__init__()
        self.loss = prometheus_client.Gauge("loss", "loss", registry=registry)
        self.step = prometheus_client.Summary("step_seconds", "step time", registry=registry)
        self.t0 = 0.0

    def on_train_batch_begin(self, batch, logs=None):  # type: ignore[no-untyped-def]
        self.t0 = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):  # type: ignore[no-untyped-def]
        self.step.observe(time.perf_counter() - self.t0)
        self.loss.set(logs["loss"])


def hook_cost(
    model: keras.Model, meter_provider: MeterProvider, tracer_provider: TracerProvider, flavour_name: str
) -> dict[str, float]:
    """CPU µs per ``on_train_batch_begin`` + ``on_train_batch_end`` pair of otel_ml's callback, per input kind.

    The hooks alone, driven with a real loss tensor in the logs (a new one
    each step, as Keras gives them) and, for ``tf.data`` (whose batch size
    Keras does not declare), Keras's loss count growing by a batch each step
    outside the timed part: on a busy machine this is the one figure the
    neighbours do not move.
    """
    from types import SimpleNamespace

    from otel_ml._training.instruments import TrainingInstruments
    from otel_ml._training.options import OPTIONS, TrainingOptions
    from otel_ml._training.wrappers import _fit_callback_class
    from otel_ml.keras._flavour import KERAS_3
    from otel_ml.tf_keras._flavour import KERAS_2

    flavour = KERAS_3 if flavour_name == "keras" else KERAS_2
    options = TrainingOptions(**{o.name: o.default for o in OPTIONS})

    instruments = TrainingInstruments.create(meter_provider.get_meter("bench"))
    tracer = tracer_provider.get_tracer("bench")
    calls = 20_000
    losses = [{"loss": tf.constant(0.5 + 1e-6 * i)} for i in range(calls)]
    if flavour_name == "keras":
        arrays: Any = SimpleNamespace(batch_size=BATCH, num_batches=10**9)
    else:  # Keras 2's DataHandler, and its adapter's methods
        sizes = SimpleNamespace(batch_size=lambda: BATCH, has_partial_batch=lambda: False)
        arrays = SimpleNamespace(_adapter=sizes, inferred_steps=10**9)
    costs = {}
    for kind, adapter in (("arrays", arrays), ("tf_data", None)):
        run = _fit_callback_class(flavour)(
            model, instruments, tracer, options, "hook", tracer.start_span("fit"), flavour
        )
        run.set_model(model)
        run.adapter = adapter
        run.on_train_begin()
        run.on_epoch_begin(0)
        count = run._loss._count if run._loss is not None else None
        if count is not None:
            count.assign(0.0)  # Keras resets its metrics at each epoch start
        spent = 0
        for batch in range(calls):
            if count is not None:
                count.assign_add(BATCH)  # what Keras's train step does, not timed
            start = time.thread_time_ns()
            run.on_train_batch_begin(batch)
            run.on_train_batch_end(batch, losses[batch])
            spent += time.thread_time_ns() - start
        run.on_epoch_end(0)
        costs[kind] = spent / calls / 1e3
    return costs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=300, help="timed steps per run")
    parser.add_argument("--width", type=int, default=384, help="hidden width (sets the step time)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="what a step's time is")
    parser.add_argument("--flavour", choices=("keras", "tf_keras"), default="keras")
    args = parser.parse_args()
    k = importlib.import_module(args.flavour)

    k.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH * args.steps, 64)).astype("float32")
    y = rng.normal(size=(BATCH * args.steps, 1)).astype("float32")
    layers = [k.Input((64,)), k.layers.Dense(args.width, activation="relu"), k.layers.Dense(1)]
    model = k.Sequential(layers, name="bench")
    model.compile("sgd", "mse")
    model.fit(x[: BATCH * 20], y[: BATCH * 20], batch_size=BATCH, verbose=0)  # trace once

    meter_provider = MeterProvider(metric_readers=[OtelMLPrometheusMetricReader(start_server=False)])
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SlowStepBuffer())
    logdir = tempfile.mkdtemp(prefix="bench-tb-")

    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)

    clock = time.perf_counter if args.clock == "wall" else time.process_time

    def timed(callbacks: list[keras.callbacks.Callback], tf_data: bool = False) -> float:
        start = clock()
        if tf_data:
            model.fit(dataset, epochs=1, verbose=0, callbacks=callbacks, shuffle=False)
        else:
            model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=callbacks, shuffle=False)
        return (clock() - start) / args.steps * 1e6

    def plain() -> float:
        return timed([])

    def with_otel_ml(tf_data: bool = False) -> float:
        otel_ml.instrument(meter_provider=meter_provider, tracer_provider=tracer_provider)
        try:
            return timed([], tf_data)
        finally:
            otel_ml.uninstrument()

    def tensorboard() -> float:
        return timed([k.callbacks.TensorBoard(log_dir=logdir, update_freq="batch")])

    def prom() -> float:
        return timed([PromCallback(prometheus_client.CollectorRegistry())])

    variants = {
        "plain": plain,
        "otel_ml": with_otel_ml,
        "tensorboard_batch": tensorboard,
        "prometheus_client": prom,
        "plain_tf_data": lambda: timed([], tf_data=True),
        "otel_ml_tf_data": lambda: with_otel_ml(tf_data=True),
    }
    if args.flavour == "tf_keras":
        del variants["prometheus_client"]  # its callback is a Keras 3 one
    for fn in variants.values():  # warm every path once (TensorBoard's writer, our instruments)
        fn()
    samples = _common.interleave(variants, args.rounds)
    hooks = hook_cost(model, meter_provider, tracer_provider, args.flavour)
    base = _common.median(samples["plain"])
    rows = ["| variant | median µs/step | overhead µs/step | ratio to plain |", "|---|---:|---:|---:|"]
    for name, values in samples.items():
        med = _common.median(values)
        ref = _common.median(samples["plain_tf_data"]) if name.endswith("tf_data") else base
        rows.append(f"| {name} | {med:.1f} | {med - ref:+.1f} | {med / ref:.3f} |")
    ratio = _common.median(samples["otel_ml"]) / base
    # Each round runs every variant back to back: the ratio within a round cancels
    # the slow drifts of a shared machine that the medians of each variant keep.
    paired = _common.median([o / p for o, p in zip(samples["otel_ml"], samples["plain"], strict=True)])
    tf_ratio = _common.median(samples["otel_ml_tf_data"]) / _common.median(samples["plain_tf_data"])
    tb_over = _common.median(samples["tensorboard_batch"]) - base
    ours = _common.median(samples["otel_ml"]) - base
    body = (
        f"Model: Dense(64→{args.width}→1), batch {BATCH}, {args.steps} timed steps per run, "
        f"{args.rounds} interleaved rounds, medians; clock: {args.clock} "
        f"({'process CPU time, all threads' if args.clock == 'cpu' else 'wall time'}); "
        f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.\n\n" + "\n".join(rows) + "\n\n"
        f"- target otel_ml / plain ≤ 1.03: **{ratio:.3f}** ({'met' if ratio <= 1.03 else 'NOT met'}); "
        f"median of the per-round ratios {paired:.3f}\n"
        f"- target otel_ml_tf_data / plain_tf_data ≤ 1.03: **{tf_ratio:.3f}** "
        f"({'met' if tf_ratio <= 1.03 else 'NOT met'})\n"
        f"- target less overhead than TensorBoard(update_freq='batch'): otel_ml {ours:+.1f} µs vs "
        f"TensorBoard {tb_over:+.1f} µs ({'met' if ours < tb_over else 'NOT met'})\n\n"
        f"The hooks alone (CPU time of the training thread per step, 20,000 steps): arrays "
        f"{hooks['arrays']:.1f} µs, tf.data {hooks['tf_data']:.1f} µs.\n\n"
        "Raw samples (µs/step):\n\n"
        + "\n".join(f"- {k}: {', '.join(f'{v:.1f}' for v in vals)}" for k, vals in samples.items())
        + "\n"
    )
    path = _write(args.flavour, "python bench/bench_keras.py " + " ".join(sys.argv[1:]), body)
    print(path.read_text())


def _write(flavour: str, command: str, body: str) -> Path:
    """Keras 3 figures make the file; Keras 2's are its own section, each kept when the other is re-run."""
    path = _common.RESULTS / "keras.md"
    head, _, tail = (path.read_text() if path.exists() else "").partition(TF_KERAS_SECTION)
    if flavour == "keras":
        path = _common.write("keras", "Keras fit overhead", command, body)
        if tail:
            path.write_text(path.read_text().rstrip("\n") + "\n" + TF_KERAS_SECTION + tail)
        return path
    date = f"{_common.dt.datetime.now(_common.dt.timezone.utc):%Y-%m-%d %H:%M UTC}"
    header = f"- date: {date}\n- machine: {_common.machine()}\n- command: `{command}`\n\n"
    path.write_text((head or "# Keras fit overhead\n").rstrip("\n") + "\n" + TF_KERAS_SECTION + header + body)
    return path


if __name__ == "__main__":
    main()
