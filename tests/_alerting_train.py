"""Training runs for the alert-delivery test: real Keras fits served on the embedded /metrics endpoint.

    python tests/_alerting_train.py RUN[:nan] ... [--hold SECONDS]

Each argument is one run (``ml.run.name``), fitted in turn in this process;
``:nan`` puts a NaN label in the third batch, so the loss is NaN from there on.
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--hold", type=float, default=60.0)
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
    print("ALL DONE", flush=True)
    time.sleep(args.hold)


if __name__ == "__main__":
    main()
