"""A hyperparameter sweep in one process: 500 trials, each a new tiny model trained for one step.

Run by tests/test_keras_sweep.py under ``opentelemetry-instrument``; not part
of the corpus (its 500 label pairs would overflow the bound for the programs
after it). Each trial is named with ``otel_ml.run(trial_id)``, as docs/keras.md
("Sweeps") says. Writes each trial's true figures (steps, samples, the loss of
its one batch as Keras logged it) as JSON lines to ``SWEEP_TRUTH``, then
scrapes the process's own ``/metrics`` into ``SWEEP_METRICS``.
"""

import json
import os
import sys
import urllib.request
from pathlib import Path

import keras
import numpy as np

import otel_ml

TRIALS = int(sys.argv[1]) if len(sys.argv) > 1 else 500
rng = np.random.default_rng(0)
x = rng.normal(size=(8, 2)).astype("float32")
y = rng.normal(size=(8, 1)).astype("float32")
truth = []
for trial in range(TRIALS):
    learning_rate = float(10 ** rng.uniform(-3, -1))
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(learning_rate), "mse", run_eagerly=True)
    with otel_ml.run(f"trial-{trial}"):
        history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    truth.append({"trial": f"trial-{trial}", "model": model.name, "steps": int(model.optimizer.iterations.numpy()),
                  "samples": 8, "loss": history.history["loss"][0], "learning_rate": learning_rate})  # fmt: skip
print("trials", TRIALS, "last model", truth[-1]["model"])
if os.environ.get("SWEEP_TRUTH"):
    Path(os.environ["SWEEP_TRUTH"]).write_text("".join(json.dumps(t) + "\n" for t in truth))
    url = f"http://127.0.0.1:{os.environ['OTEL_EXPORTER_PROMETHEUS_PORT']}/metrics"
    with urllib.request.urlopen(url, timeout=30) as response:
        Path(os.environ["SWEEP_METRICS"]).write_bytes(response.read())
