"""The ``otel-ml tensorboard`` bridge: real event files, a truncated one, restarts that export nothing twice."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_ml import cli
from otel_ml.tensorboard_bridge import register
from otel_ml.tensorboard_bridge._bridge import Bridge
from otel_ml.tensorboard_bridge._state import StateError

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
                        found[tuple(str(v) for v in p.attributes.values())] = p.value
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
    assert _points(reader, "ml.train.loss")[("tensorboard", "run_a", "train")] == STEPS - 1
    stats = {k[-1]: v for k, v in _points(reader, "ml.tensorboard.distribution").items() if k[0] == "run_a"}
    assert stats == {"count": 2.0, "min": 1.0, "max": 3.0, "mean": 2.0}

    # Restart with the same state: nothing is exported again.
    again, reader2 = _bridge(logs, state)
    assert again.poll(final=True) == 0
    assert _points(reader2, "ml.tensorboard.bridge.events") == {}
    assert _points(reader2, "ml.tensorboard.writes") == {}

    # A new run and new events in an old run: exactly those are exported.
    _write_run(logs / "run_c")
    _write_run(logs / "run_a", start=STEPS)  # a second event file in run_a
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
    assert args.run(args, meter_provider=MeterProvider(metric_readers=[reader])) == 0
    assert _points(reader, "ml.tensorboard.bridge.events") == {("exp1",): 3 * STEPS}
    assert (tmp_path / "s" / "bridge_state.json").exists()


def test_unreadable_state_is_refused(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "bridge_state.json").write_text("{not json")
    with pytest.raises(StateError, match="unreadable"):
        _bridge(tmp_path / "logs", tmp_path / "state")
