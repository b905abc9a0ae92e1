"""Training runs for the alert-delivery test: real Keras fits served on the embedded /metrics endpoint.

    python tests/_alerting_train.py RUN[:nan] ... [--tf-summary RUN --logdir DIR] [--tensorboardx RUN --tbx-logdir DIR]
        [--hold SECONDS]

Each argument is one run (``ml.run.name``), fitted in turn in this process;
``:nan`` puts a NaN label in the third batch, so the loss is NaN from there on.
``--tf-summary RUN`` then runs the TensorBoard guide's ``GradientTape`` loop
(no Keras ``fit``: a ``tf.Variable`` model, its gradients applied by hand)
under one loop-wide ``with writer.as_default():``, writing ``loss`` to
``DIR/RUN``; a NaN label turns the loss NaN at step :data:`TF_NAN_STEP` and
the loop goes on, the writer left open (a long run). ``--tensorboardx RUN``
writes the same with tensorboardX's ``SummaryWriter`` (``flush_secs=2``) to
``DIR/RUN``, for ``otel-ml tensorboard`` to bridge.
The wall time of each run's first non-finite loss is printed as
``FAULT <run> <unix time>``, then the endpoint is kept up for ``--hold`` seconds.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

import otel_ml

NAN_BATCH = 2
TF_STEPS, TF_NAN_STEP, TF_STEP_SECONDS = 40, 8, 0.1


def _batches(steps: int, nan_step: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(11)
    true_w = rng.normal(size=(8, 1)).astype("float32")
    batches = []
    for step in range(steps):
        x = rng.normal(size=(32, 8)).astype("float32")
        y = x @ true_w
        if step == nan_step:
            y[0] = np.nan  # one bad label: the weights turn NaN, so does every later loss
        batches.append((x, y))
    return batches


def tf_summary_run(run: str, logdir: str) -> None:
    """The guide's custom loop, one loop-wide default writer, the writer never closed before the hold."""
    import tensorflow as tf

    w = tf.Variable(tf.zeros((8, 1)))
    writer = tf.summary.create_file_writer(f"{logdir}/{run}")
    seen = False
    with writer.as_default():
        for step, (x, y) in enumerate(_batches(TF_STEPS, TF_NAN_STEP)):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(tf.matmul(x, w) - y))
            w.assign_sub(0.05 * tape.gradient(loss, w))
            tf.summary.scalar("loss", loss, step=step)
            if not seen and not math.isfinite(float(loss)):
                seen = True
                print(f"FAULT {run} {time.time():.3f}", flush=True)
            time.sleep(TF_STEP_SECONDS)
    print(f"RUN {run} done", flush=True)
    _keep.append(writer)  # open until the program ends, as in a long training


def tensorboardx_run(run: str, logdir: str) -> None:
    """The same loss curve written with tensorboardX (NumPy), at a 2 s flush (its default is 120 s)."""
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(f"{logdir}/{run}", flush_secs=2)
    w = np.zeros((8, 1), dtype="float32")
    seen = False
    for step, (x, y) in enumerate(_batches(TF_STEPS, TF_NAN_STEP)):
        error = x @ w - y
        loss = float(np.mean(error**2))
        w = w - 0.05 * (2 * x.T @ error / len(x))
        writer.add_scalar("loss", loss, step)
        if not seen and not math.isfinite(loss):
            seen = True
            print(f"FAULT {run} {time.time():.3f}", flush=True)
        time.sleep(TF_STEP_SECONDS)
    print(f"RUN {run} done", flush=True)
    _keep.append(writer)


_keep: list[object] = []


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--hold", type=float, default=60.0)
    parser.add_argument("--tf-summary")
    parser.add_argument("--logdir")
    parser.add_argument("--tensorboardx")
    parser.add_argument("--tbx-logdir")
    args = parser.parse_args()
    otel_ml.instrument()
    import keras

    class FaultClock(keras.callbacks.Callback):
        """Prints when the loss first turns non-finite: the fault's time for the latency figure."""

        def __init__(self, run: str) -> None:
            super().__init__()
            self.run, self.seen = run, False

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if not self.seen and not math.isfinite(float((logs or {}).get("loss", 0.0))):
                self.seen = True
                print(f"FAULT {self.run} {time.time():.3f}", flush=True)

    for spec in args.runs:
        run, _, kind = spec.partition(":")
        keras.utils.set_random_seed(7)
        rng = np.random.default_rng(7)
        x = rng.normal(size=(256, 8)).astype("float32")
        y = (x @ rng.normal(size=(8, 1))).astype("float32")
        if kind == "nan":
            y[NAN_BATCH * 32] = np.nan
        model = keras.Sequential(
            [keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)], name="demo_mlp"
        )
        model.compile(optimizer="adam", loss="mse")
        with otel_ml.run(run):
            model.fit(x, y, batch_size=32, epochs=2, verbose=0, shuffle=False, callbacks=[FaultClock(run)])
        print(f"RUN {run} done", flush=True)
    if args.tf_summary:
        tf_summary_run(args.tf_summary, args.logdir)
    if args.tensorboardx:
        tensorboardx_run(args.tensorboardx, args.tbx_logdir)
    print("ALL DONE", flush=True)
    time.sleep(args.hold)


if __name__ == "__main__":
    main()
