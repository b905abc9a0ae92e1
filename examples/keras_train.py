"""A real Keras training on synthetic data, observable through otel_ml.

Run it plainly (it calls ``otel_ml.instrument()`` itself) or with no code
change at all through ``opentelemetry-instrument python examples/keras_train.py``.
With nothing configured, metrics are served on http://127.0.0.1:9464/metrics
and slow steps on http://127.0.0.1:9464/slow-steps.

One step is made deliberately slow (``--slow-step``) so that its exemplar and
its ``keras.train_step`` span can be found; ``--nan-at-step`` injects a NaN
label so the loss turns NaN from that step on.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import time

import numpy as np

import otel_ml


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=2048, help="training samples (validation: a quarter)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--slow-step", type=int, default=40, help="global step (0-based) to slow down; -1: none")
    parser.add_argument("--slow-seconds", type=float, default=0.3)
    parser.add_argument("--nan-at-step", type=int, default=-1, help="global step whose batch gets a NaN label")
    parser.add_argument("--run-name", default=None, help="ml.run.name (default: OTEL_ML_RUN_NAME or the model name)")
    parser.add_argument("--hold", type=float, default=0.0, help="keep serving /metrics this many seconds after fit")
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("otel_ml").setLevel(logging.INFO)
    otel_ml.instrument()  # a no-op when opentelemetry-instrument already did it

    import keras  # imported after instrument() on purpose: patched on import

    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    x = rng.normal(size=(args.samples, 16)).astype("float32")
    w = rng.normal(size=(16, 1)).astype("float32")
    y = (x @ w + 0.1 * rng.normal(size=(args.samples, 1))).astype("float32")
    steps_per_epoch = -(-args.samples // args.batch_size)
    if args.nan_at_step >= 0:
        batch = args.nan_at_step % steps_per_epoch
        y[batch * args.batch_size] = np.nan
    x_val, y_val = x[: args.samples // 4], y[: args.samples // 4]

    model = keras.Sequential(
        [keras.Input((16,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)], name="demo_mlp"
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", metrics=["mae"])

    from otel_ml.distro.endpoint import embedded_url

    url = embedded_url()
    if url:
        print(f"otel_ml metrics endpoint: {url}")
        print(f"slow steps (find an exemplar's trace_id here): {url.removesuffix('/metrics')}/slow-steps")

    class SlowStep(keras.callbacks.Callback):
        """Sleeps once, inside the chosen step, to make it a slow step."""

        def __init__(self) -> None:
            super().__init__()
            self.step = 0

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if self.step == args.slow_step:
                time.sleep(args.slow_seconds)
            self.step += 1

    run = otel_ml.run(args.run_name) if args.run_name else contextlib.nullcontext()
    with run:
        history = model.fit(
            x,
            y,
            batch_size=args.batch_size,
            epochs=args.epochs,
            validation_data=(x_val, y_val),
            callbacks=[SlowStep()],
            verbose=0,
            shuffle=False,
        )
    print(f"fit finished after {len(history.history['loss'])} epochs", flush=True)
    if args.hold > 0:
        time.sleep(args.hold)


if __name__ == "__main__":
    main()
