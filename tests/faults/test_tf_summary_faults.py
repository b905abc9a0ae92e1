"""tf.summary against odd values and options: nothing lost, nothing logged per write."""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from otel_ml.tf_summary import TfSummaryInstrumentor
from tests._telemetry import Telemetry

tf = pytest.importorskip("tensorflow")
PATHS = pytest.mark.parametrize("per_write", [False, True], ids=["files", "per_write"])


def _values(telemetry: Telemetry, name: str) -> dict[str, float]:
    return {p.attributes.get("ml.summary.tag", p.attributes["ml.run.name"]): p.value for p in telemetry.points(name)}


@PATHS
def test_non_finite_scalars_stay_off_the_gauges_and_are_counted(
    telemetry: Telemetry, tmp_path: Path, caplog: Any, per_write: bool
) -> None:
    TfSummaryInstrumentor().instrument(
        meter_provider=telemetry.meter_provider, summary_logdir_root=str(tmp_path), summary_per_write=per_write
    )
    writer = tf.summary.create_file_writer(str(tmp_path / "run"))
    with caplog.at_level(logging.WARNING):
        with writer.as_default():
            for step, value in enumerate([1.0, float("nan"), float("inf"), 2.0, float("-inf")]):
                tf.summary.scalar("loss", value, step=step)
        writer.close()
        telemetry.points("ml.tensorboard.scalar")  # a collection: the SDK would warn here too
    assert _values(telemetry, "ml.tensorboard.writes") == {"loss": 5}
    assert _values(telemetry, "ml.tensorboard.nonfinite") == {"loss": 3}
    assert _values(telemetry, "ml.tensorboard.scalar") == {"loss": 2.0}  # the last finite value
    assert [p.value for p in telemetry.points("ml.train.loss")] == [2.0]
    assert _values(telemetry, "ml.tensorboard.step") == {"run": 4}
    assert [r.getMessage() for r in caplog.records] == []


@PATHS
def test_pattern_whose_group_matches_nothing_keeps_the_logdir_name(
    telemetry: Telemetry, tmp_path: Path, per_write: bool
) -> None:
    TfSummaryInstrumentor().instrument(
        meter_provider=telemetry.meter_provider,
        summary_logdir_root=str(tmp_path),
        summary_run_name_pattern="(nomatch)?",
        summary_per_write=per_write,
    )
    writer = tf.summary.create_file_writer(str(tmp_path / "logs" / "exp1"))
    with writer.as_default():
        for step in range(3):
            tf.summary.scalar("loss", step / 10, step=step)
    writer.close()
    assert {p.attributes["ml.run.name"]: p.value for p in telemetry.points("ml.tensorboard.writes")} == {"logs/exp1": 3}


# --- which files are ours, and logdirs that are not local directories --------------------------------


def _foreign_file(logdir: Path, host: str, values: list[float]) -> Path:
    """An event file named as this process's writer would name it (same PID), written by someone else."""
    from tests.faults._records import frame, scalar

    logdir.mkdir(parents=True, exist_ok=True)
    path = logdir / f"events.out.tfevents.{int(time.time()) - 60}.{host}.{os.getpid()}.0.v2"
    path.write_bytes(b"".join(frame(scalar("loss", value, step)) for step, value in enumerate(values)))
    return path


def test_files_of_another_container_with_the_same_pid_are_not_ours(telemetry: Telemetry, tmp_path: Path) -> None:
    logdir = tmp_path / "shared"
    _foreign_file(logdir, socket.gethostname(), [7.0] * 6)  # the previous container: same host name, same PID
    TfSummaryInstrumentor().instrument(meter_provider=telemetry.meter_provider, summary_logdir_root=str(tmp_path))
    writer = tf.summary.create_file_writer(str(logdir))
    _foreign_file(logdir / "..", "other-pod", [7.0] * 6).rename(logdir / "events.out.tfevents.9.other-pod.1.0.v2")
    with writer.as_default():
        tf.summary.scalar("loss", 0.5, step=0)
    writer.close()
    assert _values(telemetry, "ml.tensorboard.writes") == {"loss": 1}
    assert _values(telemetry, "ml.tensorboard.scalar") == {"loss": 0.5}


def test_ram_filesystem_logdir_is_followed_through_gfile(telemetry: Telemetry, tmp_path: Path) -> None:
    TfSummaryInstrumentor().instrument(meter_provider=telemetry.meter_provider, summary_logdir_root=str(tmp_path))
    logdir = f"ram://otel_ml_test_{os.getpid()}_{time.monotonic_ns()}/run"
    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default():
        for step, value in enumerate([0.9, 0.6, 0.3]):
            tf.summary.scalar("loss", value, step=step)
    writer.close()
    assert {p.attributes["ml.run.name"]: p.value for p in telemetry.points("ml.tensorboard.writes")} == {logdir: 3}
    assert [p.value for p in telemetry.points("ml.tensorboard.scalar")] == [pytest.approx(0.3)]


def test_a_logdir_gfile_cannot_list_is_logged_once(telemetry: Telemetry, caplog: Any) -> None:
    from otel_ml._summary import SummaryExporter, SummaryInstruments
    from otel_ml.tf_summary._watch import LogdirWatcher

    meter = telemetry.meter_provider.get_meter("test")
    watcher = LogdirWatcher(SummaryExporter(SummaryInstruments.create(meter), 10, "tf_summary"), 60.0, lambda: None)
    watcher.watch("run", "nosuchscheme://bucket/run")
    try:
        with caplog.at_level(logging.WARNING):
            assert watcher.read() == 0
            assert watcher.read() == 0
    finally:
        watcher.stop()
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(messages) == 1
    assert messages[0].startswith("otel_ml: tf.summary logdir nosuchscheme://bucket/run is not followed: it cannot")


def test_writer_created_before_instrumenting_is_followed(telemetry: Telemetry, tmp_path: Path) -> None:
    writer = tf.summary.create_file_writer(str(tmp_path / "early"))
    writer.set_as_default()
    try:
        TfSummaryInstrumentor().instrument(meter_provider=telemetry.meter_provider, summary_logdir_root=str(tmp_path))
        for step in range(4):
            tf.summary.scalar("loss", step / 10, step=step)
        writer.close()
    finally:
        from tensorflow.python.ops import summary_ops_v2

        summary_ops_v2._summary_state.writer = None
    writes = {p.attributes["ml.run.name"]: p.value for p in telemetry.points("ml.tensorboard.writes")}
    assert writes.get("early") == 4, writes


def test_default_writer_created_before_instrumenting_per_write_says_so_once(
    telemetry: Telemetry, tmp_path: Path, caplog: Any
) -> None:
    writer = tf.summary.create_file_writer(str(tmp_path / "early"))
    writer.set_as_default()
    try:
        with caplog.at_level(logging.WARNING):
            TfSummaryInstrumentor().instrument(
                meter_provider=telemetry.meter_provider, summary_logdir_root=str(tmp_path), summary_per_write=True
            )
            tf.summary.scalar("loss", 0.5, step=0)
        writer.close()
    finally:
        from tensorflow.python.ops import summary_ops_v2

        summary_ops_v2._summary_state.writer = None
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "otel_ml: the default tf.summary writer was created before instrumenting; its logdir is unknown, so its "
        "writes are exported under ml.run.name='unknown'. Instrument before creating writers."
    ]
    assert {p.attributes["ml.run.name"]: p.value for p in telemetry.points("ml.tensorboard.writes")} == {"unknown": 1}
