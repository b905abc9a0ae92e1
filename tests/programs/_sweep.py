"""A hyperparameter sweep in one process: 500 trials, each a new tiny model trained for one step.

Run by tests/test_keras_sweep.py under ``opentelemetry-instrument``; not part
of the corpus (its 500 label pairs would overflow the bound for the programs
after it). Each trial is named with ``otel_ml.run(trial_id)``, as docs/keras.md
("Sweeps") says. Writes each trial's true figures (steps, samples, the loss of
its one batch as Keras logged it) as JSON lines to ``SWEEP_TRUTH``, then
scrapes the process's own ``/metrics`` into ``SWEEP_METRICS``; every 50
trials it scrapes too, into ``SWEEP_METRICS.<trial>`` (the bound holds at
any time, not only at the end).
"""

import json
import os
import sys
import time
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


def scrape(path: str) -> None:
    time.sleep(1.1)  # past the endpoint's 1 s answer cache: this scrape shows the trials fitted so far
    url = f"http://127.0.0.1:{os.environ['OTEL_EXPORTER_PROMETHEUS_PORT']}/metrics"
    with urllib.request.urlopen(url, timeout=30) as response:
        Path(path).write_bytes(response.read())


for trial in range(TRIALS):
    learning_rate = float(10 ** rng.uniform(-3, -1))
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(learning_rate), "mse", run_eagerly=True)
    with otel_ml.run(f"trial-{trial}"):
        history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    truth.append({"trial": f"trial-{trial}", "model": model.name, "steps": int(model.optimizer.iterations.numpy()),
                  "samples": 8, "loss": history.history["loss"][0], "learning_rate": learning_rate})  # fmt: skip
    if os.environ.get("SWEEP_METRICS") and trial % 50 == 49:
        scrape(f"{os.environ['SWEEP_METRICS']}.{trial}")
print("trials", TRIALS, "last model", truth[-1]["model"])
if os.environ.get("SWEEP_TRUTH"):
    Path(os.environ["SWEEP_TRUTH"]).write_text("".join(json.dumps(t) + "\n" for t in truth))
    scrape(os.environ["SWEEP_METRICS"])
