"""With the collector down or silent, a finished program exits within OTEL_ML_EXIT_TIMEOUT and says what was lost."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests import _net

pytestmark = pytest.mark.slow

PROGRAM = """
import logging
logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
import otel_ml
otel_ml.instrument()
from opentelemetry import metrics, trace
counter = metrics.get_meter("faults").create_counter("faults.exits")
for _ in range(5):
    with trace.get_tracer("faults").start_as_current_span("work"):
        counter.add(1)
print("done", flush=True)
"""


@pytest.fixture
def silent() -> Iterator[socket.socket]:
    """A listening socket whose connections are never answered (a hung collector)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock


@pytest.fixture
def silent_collector(silent: socket.socket) -> int:
    return int(silent.getsockname()[1])


def run_until_exit(env: dict[str, str], program: str = PROGRAM) -> tuple[float, int, str, str]:
    """(seconds from the program's last line to its exit, exit code, stdout, stderr)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", program],
        env={**os.environ, "PYTHONPATH": str(_net.ROOT), "OTEL_EXPORTER_PROMETHEUS_PORT": "0", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("done"):
                break
        finished = time.monotonic()
        code = proc.wait(60)
        took = time.monotonic() - finished
        return took, code, "".join(lines) + proc.stdout.read(), proc.stderr.read()
    finally:
        _net.stop(proc)


def otlp_env(port: int, protocol: str, timeout: str | None) -> dict[str, str]:
    env = {
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
    }
    if timeout is not None:
        env["OTEL_ML_EXIT_TIMEOUT"] = timeout
    return env


def lost_line(port: int, timeout: str) -> str:
    return (
        "WARNING otel_ml.distro._exit: otel_ml: at exit, 5 spans and 1 metric export could not be delivered within "
        f"{timeout} s (is the collector at http://127.0.0.1:{port} down?); OTEL_ML_EXIT_TIMEOUT={timeout} s "
        "bounds the wait"
    )


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_a_closed_collector_port_costs_at_most_the_exit_timeout(protocol) -> None:
    port = _net.free_port()
    took, code, _, err = run_until_exit(otlp_env(port, protocol, "1"))
    assert code == 0
    assert 0.9 < took < 2.5, err
    assert [line for line in err.splitlines() if "otel_ml" in line] == [lost_line(port, "1")]


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_a_collector_that_never_answers_costs_at_most_the_exit_timeout(protocol, silent_collector) -> None:
    took, code, _, err = run_until_exit(otlp_env(silent_collector, protocol, "1"))
    assert code == 0
    assert 0.9 < took < 2.5, err
    assert [line for line in err.splitlines() if "otel_ml" in line] == [lost_line(silent_collector, "1")]


def test_the_default_bound_is_three_seconds(silent_collector) -> None:
    took, code, _, err = run_until_exit(otlp_env(silent_collector, "grpc", None))
    assert code == 0
    assert 2.9 < took < 4.5, err
    assert lost_line(silent_collector, "3") in err.splitlines()


def test_when_everything_is_delivered_nothing_is_said_and_nothing_waits() -> None:
    took, code, out, err = run_until_exit({"OTEL_METRICS_EXPORTER": "console", "OTEL_TRACES_EXPORTER": "console"})
    assert code == 0 and took < 1.0
    assert out.count('"name": "work"') == 5  # the console exporters delivered every span at exit
    assert "otel_ml" not in err


def test_a_bad_exit_timeout_is_one_error_and_the_default() -> None:
    took, code, _, err = run_until_exit({"OTEL_ML_EXIT_TIMEOUT": "forever", "OTEL_METRICS_EXPORTER": "none"})
    assert code == 0 and took < 1.0
    assert [line for line in err.splitlines() if "otel_ml" in line] == [
        "ERROR otel_ml._core.options: OTEL_ML_EXIT_TIMEOUT='forever' is invalid: expected a number >= 0 and <= 600; "
        "using the default 3.0"
    ]


FIT = """
import json, time
import numpy as np
import otel_ml
otel_ml.instrument()
import keras
from otel_ml.distro._exit import delivery
x = np.random.default_rng(0).normal(size=(1024, 16)).astype("float32")
y = (x.sum(axis=1) > 0).astype("float32")
model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)])
model.compile("sgd", "mse")
started = time.perf_counter()
model.fit(x, y, epochs=3, batch_size=32, verbose=0)
print(json.dumps({"fit": time.perf_counter() - started, "ended": delivery.spans_ended, "sent": delivery.spans_sent}))
print("done", flush=True)
"""


def test_a_silent_collector_does_not_hold_up_the_fit(silent, silent_collector) -> None:
    """Exports start within 50 ms and then wait 30 s for a collector that never answers; the fit does not."""
    env = {
        **otlp_env(silent_collector, "grpc", "1"),
        "OTEL_ML_SLOW_STEP_SECONDS": "0.000001",  # every step is a slow-step span
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_METRIC_EXPORT_INTERVAL": "50",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "30",
    }
    _, code, out, err = run_until_exit(env, FIT)
    assert code == 0, err
    facts = json.loads(out.splitlines()[0])
    assert facts["fit"] < 10.0  # far less than one blocked export
    # 96 steps, the first a warm-up: 95 slow-step spans, 3 epoch spans and the fit's; none delivered.
    assert (facts["ended"], facts["sent"]) == (95 + 3 + 1, 0)
    # (The exit itself is bounded in the tests above; here TensorFlow's own teardown adds 2-3 s.)
    assert "99 spans and 1 metric export could not be delivered within 1 s" in err
    silent.settimeout(1.0)
    silent.accept()[0].close()  # the exporters did connect: their exports were under way during the fit


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_credentials_never_reach_the_log(protocol) -> None:
    """User info in the endpoint and header values are masked in every line, otel_ml's and the exporters'."""
    port = _net.free_port()
    env = {
        **otlp_env(port, protocol, "1"),
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://alice:s3cr3t@127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer%20tok3n-abc,x-api-key=k3y-xyz",
    }
    program = PROGRAM.replace(
        'logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")',
        ('logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.DEBUG)'),
    )
    took, code, _, err = run_until_exit(env, program)
    assert code == 0 and took < 2.5
    for secret in ("alice", "s3cr3t", "tok3n", "k3y-xyz"):
        assert secret not in err
    assert (
        "WARNING otel_ml.distro._exit: otel_ml: at exit, 5 spans and 1 metric export could not be delivered within "
        f"1 s (is the collector at http://***@127.0.0.1:{port} down?); OTEL_ML_EXIT_TIMEOUT=1 s bounds the wait"
    ) in err.splitlines()
    if protocol == "grpc":  # the exporter's own retry line names the endpoint's user info, masked
        assert f"***@127.0.0.1:{port}" in err.replace(f"http://***@127.0.0.1:{port}", "")
