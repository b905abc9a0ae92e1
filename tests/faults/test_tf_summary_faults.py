"""tf.summary against odd values and options: nothing lost, nothing logged per write."""

from __future__ import annotations

import logging
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
