"""SIGTERM mid-run over OTLP: what was recorded arrives, then the program ends exactly as it would without otel_ml.

A real OTLP/HTTP receiver (``tests/_otlp_sink.py``) and an export interval
of 10 minutes, so nothing arrives unless the SIGTERM flush sends it. Every
case runs the same program plain (no ``instrument()``) for the exit status to
compare against.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests import _net
from tests._otlp_sink import otlp_receiver

pytestmark = pytest.mark.slow

FIT = """
import os, signal, sys
import numpy as np
import otel_ml
if sys.argv[1] == "instrumented":
    otel_ml.instrument()
import keras

class Terminated(keras.callbacks.Callback):
    steps = 0
    def on_train_batch_begin(self, batch, logs=None):
        if Terminated.steps == 60:  # 60 steps done (in the second of 20 epochs), the 61st not begun
            print("steps before SIGTERM:", Terminated.steps, flush=True)
            os.kill(os.getpid(), signal.SIGTERM)  # as a job runner does, mid-fit
        Terminated.steps += 1

x = np.random.default_rng(0).normal(size=(512, 8)).astype("float32")
y = x.sum(axis=1, keepdims=True)
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4), keras.layers.Dense(1)])
model.compile("sgd", "mse")
model.fit(x, y, epochs=20, batch_size=16, verbose=0, callbacks=[Terminated()])
print("fit ended", flush=True)
"""

HANDLERS = """
import os, signal, sys, time
mode, instrumented = sys.argv[1], sys.argv[2] == "instrumented"

def handler(signum, frame):
    print("program handler", signum, flush=True)
    sys.exit(3)

if mode == "before":
    signal.signal(signal.SIGTERM, handler)
elif mode == "ignored":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
import otel_ml
if instrumented:
    otel_ml.instrument()
if mode == "after":
    print("previous", signal.signal(signal.SIGTERM, handler) is signal.SIG_DFL, flush=True)
print("getsignal", {"before": handler, "after": handler, "ignored": signal.SIG_IGN, "none": signal.SIG_DFL}[mode]
      is signal.getsignal(signal.SIGTERM), flush=True)
from opentelemetry import metrics
counter = metrics.get_meter("faults").create_counter("faults.work")
for _ in range(7):
    counter.add(1)
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(0.2)
print("still running", flush=True)
"""


def env_for(endpoint: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(_net.ROOT),
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_METRIC_EXPORT_INTERVAL": "600000",  # no periodic export: only the flush can deliver
        "OTEL_ML_EXIT_TIMEOUT": "5",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


def test_sigterm_mid_fit_delivers_every_step_then_dies_by_sigterm_as_plain() -> None:
    with otlp_receiver() as receiver:
        env = env_for(receiver.endpoint)
        plain = subprocess.run([sys.executable, "-c", FIT, "plain"], env=env, capture_output=True, text=True)
        ours = subprocess.run([sys.executable, "-c", FIT, "instrumented"], env=env, capture_output=True, text=True)
        steps = receiver.sums("ml.train.steps")
    assert plain.returncode == -signal.SIGTERM, plain.stderr
    assert ours.returncode == plain.returncode, ours.stderr
    assert ours.stdout == plain.stdout == "steps before SIGTERM: 60\n"
    # All 60 steps of the fit arrived, in one flush (before the fix: none did).
    assert steps == [60]
    assert "otel_ml" not in ours.stderr


@pytest.mark.parametrize(
    ("mode", "code", "said"),
    [
        ("none", -signal.SIGTERM, "getsignal True\n"),
        ("before", 3, "getsignal True\nprogram handler 15\n"),
        ("after", 3, "previous True\ngetsignal True\nprogram handler 15\n"),
        ("ignored", 0, "getsignal True\nstill running\n"),
    ],
)
def test_the_programs_own_sigterm_handling_is_unchanged(mode, code, said) -> None:
    with otlp_receiver() as receiver:
        env = env_for(receiver.endpoint)
        plain = subprocess.run([sys.executable, "-c", HANDLERS, mode, "plain"], env=env, capture_output=True, text=True)
        arrived_plain = receiver.sums("faults.work")
        ours = subprocess.run(
            [sys.executable, "-c", HANDLERS, mode, "instrumented"], env=env, capture_output=True, text=True
        )
        arrived = receiver.sums("faults.work")
    assert (plain.returncode, plain.stdout) == (code, said), plain.stderr
    assert (ours.returncode, ours.stdout) == (code, said), ours.stderr
    assert arrived_plain == []
    # Flushed on SIGTERM; the handler's sys.exit (and the ignored case's normal end) then exports again at exit.
    assert arrived == {"none": [7], "before": [7, 7], "after": [7, 7], "ignored": [7]}[mode]
    assert "otel_ml" not in ours.stderr
    json.dumps(arrived)


def test_sigterm_with_the_collector_down_dies_within_the_exit_bound_and_says_so() -> None:
    env = {**env_for(f"http://127.0.0.1:{_net.free_port()}"), "OTEL_ML_EXIT_TIMEOUT": "1"}
    program = HANDLERS.replace("os.kill(", "print('kill at', time.time(), flush=True); os.kill(")
    done = subprocess.run(
        [sys.executable, "-c", program, "none", "instrumented"], env=env, capture_output=True, text=True
    )
    ended = time.time()
    killed_at = float(done.stdout.splitlines()[-1].split()[-1])
    assert done.returncode == -signal.SIGTERM
    assert ended - killed_at < 1.0 + 1.0  # OTEL_ML_EXIT_TIMEOUT=1, then the default SIGTERM
    assert [line for line in done.stderr.splitlines() if "otel_ml" in line] == [
        "otel_ml: on SIGTERM, the export did not finish within 1 s (is the collector at "
        f"{env['OTEL_EXPORTER_OTLP_ENDPOINT']} down?); OTEL_ML_EXIT_TIMEOUT=1 s bounds the wait"
    ]
