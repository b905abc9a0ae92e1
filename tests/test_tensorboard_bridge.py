"""The ``otel-ml tensorboard`` bridge: real event files, a truncated one, restarts that export nothing twice."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_ml.distro import cli
from otel_ml.distro.tensorboard_bridge import register
from otel_ml.distro.tensorboard_bridge._bridge import Bridge
from otel_ml.distro.tensorboard_bridge._state import StateError
from tests.faults._records import frame, scalar, write_run

tf = pytest.importorskip("tensorflow")
STEPS = 5


def _write_run(logdir: Path, offset: float = 0.0, start: int = 0) -> None:
    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        for step in range(start, start + STEPS):
            tf.summary.scalar("loss", offset + step, step=step)
            tf.summary.scalar("epoch_accuracy", step / 10, step=step)
            tf.summary.histogram("w", [1.0, 3.0], step=step)
    writer.close()


def _points(reader: InMemoryMetricReader, name: str) -> dict[tuple[str, ...], float]:
    data = reader.get_metrics_data()
    found: dict[tuple[str, ...], float] = {}
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    for p in metric.data.data_points:
                        found[tuple(str(v) for v in (p.attributes or {}).values())] = p.value  # type: ignore[union-attr]
    return found


def _bridge(logdir: Path, state: Path) -> tuple[Bridge, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    return Bridge([str(logdir)], str(state), MeterProvider(metric_readers=[reader])), reader


def test_bridge_exports_once_skips_truncated_and_never_twice(tmp_path: Path, caplog: Any) -> None:
    logs, state = tmp_path / "logs", tmp_path / "state"
    _write_run(logs / "run_a")
    _write_run(logs / "run_b", offset=100.0)
    _write_run(logs / "broken")
    broken = next((logs / "broken").glob("*tfevents*"))
    broken.write_bytes(broken.read_bytes()[:-30])  # cut the last record short

    bridge, reader = _bridge(logs, state)
    with caplog.at_level(logging.WARNING):
        exported = bridge.poll(final=True)
    # 3 values per step; the truncated file loses its last event (one histogram).
    assert exported == 3 * STEPS * 3 - 1
    assert _points(reader, "ml.tensorboard.bridge.events") == {
        ("run_a",): 3 * STEPS,
        ("run_b",): 3 * STEPS,
        ("broken",): 3 * STEPS - 1,
    }
    assert _points(reader, "ml.tensorboard.bridge.bad_files") == {("broken",): 1}
    assert sum("ends inside a record" in r.getMessage() for r in caplog.records) == 1
    scalars = _points(reader, "ml.tensorboard.scalar")
    assert scalars[("run_b", "loss")] == 100.0 + STEPS - 1
    assert _points(reader, "ml.tensorboard.writes")[("run_a", "loss", "scalar")] == STEPS
    # No phase in "run_a" nor in "loss": the phase is unknown, never guessed (issue 22).
    assert _points(reader, "ml.train.loss")[("tensorboard", "unknown", "run_a", "unknown")] == STEPS - 1
    stats = {k[-1]: v for k, v in _points(reader, "ml.tensorboard.distribution").items() if k[0] == "run_a"}
    assert stats == {"count": 2.0, "min": 1.0, "max": 3.0, "mean": 2.0}

    # Restart with the same state: nothing is exported again.
    bridge.close()
    again, reader2 = _bridge(logs, state)
    assert again.poll(final=True) == 0
    assert _points(reader2, "ml.tensorboard.bridge.events") == {}
    assert _points(reader2, "ml.tensorboard.writes") == {}

    # A new run and new events in an old run: exactly those are exported.
    _write_run(logs / "run_c")
    _write_run(logs / "run_a", start=STEPS)  # a second event file in run_a
    again.close()
    third, reader3 = _bridge(logs, state)
    assert third.poll(final=True) == 2 * 3 * STEPS
    assert _points(reader3, "ml.tensorboard.bridge.events") == {("run_a",): 3 * STEPS, ("run_c",): 3 * STEPS}
    assert _points(reader3, "ml.tensorboard.scalar")[("run_a", "loss")] == 2 * STEPS - 1


def test_bridge_follows_appends_between_polls(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    writer = tf.summary.create_file_writer(str(logs / "live"))
    bridge, reader = _bridge(logs, tmp_path / "state")
    with writer.as_default():
        tf.summary.scalar("loss", 1.0, step=0)
        writer.flush()
        assert bridge.poll() == 1
        tf.summary.scalar("loss", 2.0, step=1)
        tf.summary.scalar("loss", 3.0, step=2)
        writer.flush()
        assert bridge.poll() == 2
    assert _points(reader, "ml.tensorboard.bridge.events") == {("live",): 3}
    assert _points(reader, "ml.tensorboard.scalar") == {("live", "loss"): 3.0}


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(argv)


def test_missing_logdir_is_a_clear_error(tmp_path: Path, capsys: Any) -> None:
    assert cli.main(["tensorboard", str(tmp_path / "nope"), "--once"]) == 2
    assert f"logdir '{tmp_path / 'nope'}' does not exist or is not a directory" in capsys.readouterr().err


def test_cli_once_exports_with_given_provider(tmp_path: Path) -> None:
    _write_run(tmp_path / "logs" / "exp1")
    reader = InMemoryMetricReader()
    args = _parse(["tensorboard", str(tmp_path / "logs"), "--once", "--state-dir", str(tmp_path / "s")])
    assert args.handler(args, meter_provider=MeterProvider(metric_readers=[reader])) == 0
    assert _points(reader, "ml.tensorboard.bridge.events") == {("exp1",): 3 * STEPS}
    assert (tmp_path / "s" / "bridge_state.json").exists()


def test_unreadable_state_is_refused(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "bridge_state.json").write_text("{not json")
    with pytest.raises(StateError, match="unreadable"):
        _bridge(tmp_path / "logs", tmp_path / "state")


def test_step_is_the_highest_per_run_and_eval_runs_are_not_train(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    for run in ("train", "test", "eval"):
        records = [scalar("loss", 1.0, 5), scalar("loss", 0.5, 10), scalar("note", 0.0, 0)]  # a late write at step 0
        (logs / run).mkdir(parents=True)
        (logs / run / "events.out.tfevents.1.h").write_bytes(b"".join(frame(r) for r in records))
    bridge, reader = _bridge(logs, tmp_path / "state")
    assert bridge.poll(final=True) == 9
    assert _points(reader, "ml.tensorboard.step") == {("train",): 10, ("test",): 10, ("eval",): 10}
    phases = {k[2:]: v for k, v in _points(reader, "ml.train.loss").items()}  # (run, phase)
    assert phases == {("train", "train"): 0.5, ("test", "test"): 0.5, ("eval", "validation"): 0.5}


def test_tensorboardx_files_read_like_tensorflow_ones(tmp_path: Path) -> None:
    import tensorboardX as tensorboardx  # in the test extra

    writer = tensorboardx.SummaryWriter(str(tmp_path / "logs" / "tbx"))
    for step in range(STEPS):
        writer.add_scalar("loss", 1.0 / (step + 1), step)
        writer.add_scalar("epoch_accuracy", step / 10, step)
    writer.add_histogram("w", np.array([1.0, 2.0, 3.0, 4.0]), 0)
    writer.add_text("note", "free text", 0)
    writer.close()
    bridge, reader = _bridge(tmp_path / "logs", tmp_path / "state")
    assert bridge.poll(final=True) == 2 * STEPS + 2
    writes = {k[1:]: v for k, v in _points(reader, "ml.tensorboard.writes").items()}
    expected = {("loss", "scalar"): STEPS, ("epoch_accuracy", "scalar"): STEPS, ("w", "histogram"): 1}
    assert writes == {**expected, ("note/text_summary", "text"): 1}  # tensorboardX's name for a text tag
    assert {k[1]: v for k, v in _points(reader, "ml.tensorboard.scalar").items()} == pytest.approx(
        {"loss": 1.0 / STEPS, "epoch_accuracy": (STEPS - 1) / 10}
    )
    stats = {k[-1]: v for k, v in _points(reader, "ml.tensorboard.distribution").items()}
    assert stats["count"] == 4.0 and stats["min"] == 1.0 and stats["max"] == 4.0
    assert "free text" not in repr(reader.get_metrics_data())


def test_summary_series_pass_the_prometheus_linter(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus; scripts/test.sh installs it)")
    from prometheus_client import generate_latest

    from otel_ml.distro.endpoint._reader import OtelMLPrometheusMetricReader

    (tmp_path / "logs" / "validation").mkdir(parents=True)
    records = [scalar("epoch_loss", 0.5, 1), scalar("lr", 0.1, 1)]  # the cap of 1 tag drops lr
    (tmp_path / "logs" / "validation" / "events.out.tfevents.1.h").write_bytes(b"".join(frame(r) for r in records))
    write_run(tmp_path / "logs" / "broken", [float("nan")])
    with (tmp_path / "logs" / "broken" / "events.out.tfevents.1.host").open("ab") as handle:
        handle.write(b"\xff" * 16)
    prom = OtelMLPrometheusMetricReader(start_server=False)
    bridge = Bridge([str(tmp_path / "logs")], str(tmp_path / "state"), MeterProvider(metric_readers=[prom]), 1)
    bridge.poll(final=True)
    text = generate_latest(prom.registry).decode()
    for series in ("ml_tensorboard_scalar", "ml_tensorboard_writes_total", "ml_tensorboard_dropped_total"):
        assert series in text
    for series in ("ml_tensorboard_nonfinite_total", "ml_tensorboard_step", "ml_tensorboard_bridge_bad_files_total"):
        assert series in text
    lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert (lint.returncode, lint.stdout + lint.stderr) == (0, "")


@pytest.mark.slow
def test_once_delivers_to_a_push_exporter_before_saving(tmp_path: Path) -> None:
    write_run(tmp_path / "logs" / "run", [0.5, 0.25])
    argv = [sys.executable, "-m", "otel_ml.distro.cli", "tensorboard", str(tmp_path / "logs"), "--once"]
    argv += ["--state-dir", str(tmp_path / "state")]
    env = {**os.environ, "OTEL_METRICS_EXPORTER": "console"}
    first = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=True)
    assert '"ml.tensorboard.bridge.events"' in first.stdout and '"value": 2' in first.stdout
    again = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=True)
    assert '"ml.tensorboard.bridge.events"' not in again.stdout  # saved after delivery: nothing twice


_INSTRUMENTED = """
import time
import otel_ml
otel_ml.instrument(summary_flush_seconds=0.2)
import tensorflow as tf
writer = tf.summary.create_file_writer("runs/run_tf")
with writer.as_default():
    for step in range(3):
        tf.summary.scalar("loss", 1.0 / (step + 1), step=step)
        writer.flush()
        time.sleep(0.5)
writer.close()
"""


@pytest.mark.slow
def test_instrumented_program_and_bridge_on_one_logdir_count_each_value_once(tmp_path: Path) -> None:
    from tests._net import stop, wait_for
    from tests._otlp_sink import OtlpReceiver

    write_run(tmp_path / "runs" / "plain", [0.5, 0.25, 0.125])  # written by a program that is not instrumented
    program_receiver, bridge_receiver = OtlpReceiver(), OtlpReceiver()
    state, err = tmp_path / "state", tmp_path / "bridge.err"
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    argv = [sys.executable, "-m", "otel_ml.distro.cli", "tensorboard", str(tmp_path / "runs"), "--interval", "0.2"]
    root = Path(__file__).resolve().parent.parent
    with err.open("wb") as handle:
        bridge = subprocess.Popen(
            [*argv, "--state-dir", str(state)], cwd=root, env={**base, **bridge_receiver.env()}, stderr=handle
        )
    try:
        env = {**base, **program_receiver.env(), "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "3"}
        program = subprocess.run(
            [sys.executable, "-c", _INSTRUMENTED], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert program.returncode == 0, program.stderr
        (event_file,) = (tmp_path / "runs" / "run_tf").glob("*tfevents*")

        def read_to_the_end() -> bool:
            path = state / "bridge_state.json"
            files = json.loads(path.read_text())["files"] if path.exists() else {}
            return files.get(str(event_file), {}).get("offset") == event_file.stat().st_size

        wait_for(read_to_the_end, 60, "the bridge to read the program's file to its end")
        bridge.send_signal(15)
        assert bridge.wait(30) == 0
    finally:
        stop(bridge)
        program_receiver.close()
        bridge_receiver.close()

    def writes(receiver: OtlpReceiver) -> dict[str, int]:
        return {dict(k)["ml.run.name"]: v for k, v in receiver.last("ml.tensorboard.writes").items()}

    assert writes(program_receiver) == {"runs/run_tf": 3}  # the program reports its own values
    assert writes(bridge_receiver) == {"plain": 3}  # the bridge reports the rest, never run_tf a second time
    lines = [line for line in err.read_text().splitlines() if "reported by the instrumented process" in line]
    assert len(lines) == 1, err.read_text()
    assert lines[0].startswith("otel-ml tensorboard: run 'run_tf' is reported by the instrumented process")
    assert "as ml.run.name='runs/run_tf'" in lines[0]


def test_a_file_marked_after_the_bridge_exported_from_it_is_left_to_the_program(tmp_path: Path, caplog: Any) -> None:
    """A writer created before ``otel_ml.instrument()``: the program marks its file only when it instruments.

    The bridge had exported the first value by then; from the marker on, the program reports the file (it follows
    it from the start), so the bridge stops: the values appended afterwards are not counted twice.
    """
    from otel_ml._summary._files import write_marker

    path = write_run(tmp_path / "logs" / "early", [1.0])
    bridge, reader = _bridge(tmp_path / "logs", tmp_path / "state")
    assert bridge.poll() == 1
    with path.open("ab") as handle:  # the program instruments, marks the file, and writes on
        handle.write(b"".join(frame(scalar("loss", value, step)) for step, value in [(1, 0.5), (2, 0.25)]))
    write_marker(str(path), {"host": "h", "pid": 7, "run": "logs/early"})
    with caplog.at_level(logging.WARNING):
        assert bridge.poll() == 0
        assert bridge.poll() == 0
    assert _points(reader, "ml.tensorboard.writes") == {("early", "loss", "scalar"): 1}
    lines = [r.getMessage() for r in caplog.records if "is now reported by the instrumented process" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "the bridge stops exporting it" in lines[0]


_ON_A_TAKEN_PORT = """
import otel_ml
otel_ml.instrument(summary_flush_seconds=0.2)
import tensorflow as tf
for run in ("runs/a", "runs/b"):
    writer = tf.summary.create_file_writer(run)
    with writer.as_default():
        tf.summary.scalar("loss", 0.5, step=0)
    writer.close()
"""


@pytest.mark.slow
def test_a_program_whose_metrics_go_nowhere_leaves_no_marker_so_the_bridge_exports_its_files(tmp_path: Path) -> None:
    """One host, the defaults: the bridge holds the /metrics port, so the instrumented program cannot serve it.

    Its values reach nothing; had it marked its files "reported here", the bridge on the same logdir would skip them
    and nobody would deliver them. So no marker, one WARNING, and the bridge exports both runs.
    """
    import socket

    from tests._net import free_port

    port = free_port()
    taken = socket.socket()
    taken.bind(("127.0.0.1", port))
    taken.listen(1)
    try:
        base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        root = Path(__file__).resolve().parent.parent
        env = {**base, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "3", "OTEL_EXPORTER_PROMETHEUS_PORT": str(port)}
        program = subprocess.run(
            [sys.executable, "-c", _ON_A_TAKEN_PORT], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
    finally:
        taken.close()
    assert program.returncode == 0, program.stderr
    assert sorted(p.name for p in (tmp_path / "runs").rglob(".otel_ml-*")) == []
    lines = [line for line in program.stderr.splitlines() if "delivered nowhere" in line]
    assert len(lines) == 1, program.stderr
    bridge, reader = _bridge(tmp_path / "runs", tmp_path / "state")
    assert bridge.poll() == 2
    assert _points(reader, "ml.tensorboard.writes") == {("a", "loss", "scalar"): 1, ("b", "loss", "scalar"): 1}
