"""tf.summary with Keras's TensorBoard callback, and the ``import tensorflow.summary`` module swap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from otel_ml.tf_summary import TfSummaryInstrumentor

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")


def test_keras_tensorboard_callback_scalars_are_mirrored(telemetry: Any, tmp_path: Path) -> None:
    TfSummaryInstrumentor().instrument(meter_provider=telemetry.meter_provider, summary_logdir_root=str(tmp_path))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.integers(0, 2, size=(32, 1)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy"])
    callback = keras.callbacks.TensorBoard(log_dir=str(tmp_path / "fit"), histogram_freq=1)
    history = model.fit(x, y, epochs=2, batch_size=16, validation_data=(x, y), callbacks=[callback], verbose=0)

    writes = {
        (p.attributes["ml.run.name"], p.attributes["ml.summary.tag"]): p.value
        for p in telemetry.points("ml.tensorboard.writes")
    }
    assert writes[("fit/train", "epoch_loss")] == 2
    assert writes[("fit/validation", "epoch_loss")] == 2
    assert writes[("fit/train", "epoch_accuracy")] == 2
    scalars = {
        (p.attributes["ml.run.name"], p.attributes["ml.summary.tag"]): p.value
        for p in telemetry.points("ml.tensorboard.scalar")
    }
    assert scalars[("fit/train", "epoch_loss")] == pytest.approx(history.history["loss"][-1], rel=1e-6)
    assert scalars[("fit/validation", "epoch_loss")] == pytest.approx(history.history["val_loss"][-1], rel=1e-6)
    losses = {
        (p.attributes["ml.run.name"], p.attributes["ml.phase"]): p.value for p in telemetry.points("ml.train.loss")
    }
    assert losses[("fit/validation", "validation")] == pytest.approx(history.history["val_loss"][-1], rel=1e-6)
    assert losses[("fit/train", "train")] == pytest.approx(history.history["loss"][-1], rel=1e-6)


_SWAP_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from otel_ml.tf_summary import TfSummaryInstrumentor

    reader = InMemoryMetricReader()
    TfSummaryInstrumentor().instrument(meter_provider=MeterProvider(metric_readers=[reader]), summary_per_write=True)
    import tensorflow as tf
    assert "tensorflow.summary" not in sys.modules
    before = tf.summary
    writer = tf.summary.create_file_writer(sys.argv[1])
    with writer.as_default(step=0):
        tf.summary.scalar("before", 1.0)
    import tensorflow.summary as swapped  # what keras.callbacks.TensorBoard does
    with swapped.create_file_writer(sys.argv[1]).as_default(step=1):
        swapped.scalar("after", 2.0)
        tf.summary.scalar("after", 3.0)
        swapped.write("direct", tf.constant(5.0), step=2)  # write() itself, through the new module
    points = [
        [dict(p.attributes), p.value]
        for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics
        for m in sm.metrics if m.name == "ml.tensorboard.writes" for p in m.data.data_points
    ]
    print(json.dumps({"swapped": tf.summary is not before and swapped is tf.summary, "points": points}))
    """
)


@pytest.mark.slow
def test_patch_survives_import_tensorflow_summary(tmp_path: Path) -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(
        [sys.executable, "-c", _SWAP_SCRIPT, str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
        check=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["swapped"] is True  # the module really was replaced
    writes = {(p["ml.run.name"], p["ml.summary.tag"], p["ml.summary.kind"]): v for p, v in result["points"]}
    # The writer made by the new module's create_file_writer is known too: its run is named, not "unknown".
    assert writes == {("run", "before", "scalar"): 1, ("run", "after", "scalar"): 2, ("run", "direct", "other"): 1}


# --- one fact, one series: the rule for Keras's own TensorBoard callback (docs/tf_summary.md) ---------


@pytest.fixture
def _no_claims() -> Any:
    from otel_ml._core import reported_logdirs

    reported_logdirs.clear()
    yield
    reported_logdirs.clear()


@pytest.mark.usefixtures("_no_claims")
@pytest.mark.parametrize("per_write", [False, True], ids=["files", "per_write"])
def test_a_fit_the_keras_instrumentor_reports_keeps_its_tensorboard_callback_in_tensorboard_metrics(
    kit: Any, telemetry: Any, tmp_path: Path, per_write: bool
) -> None:
    from otel_ml.keras import KerasInstrumentor
    from otel_ml.tf_keras import TfKerasInstrumentor

    telemetry.instrument(KerasInstrumentor if kit.name == "keras" else TfKerasInstrumentor)
    telemetry.instrument(TfSummaryInstrumentor, summary_logdir_root=str(tmp_path), summary_per_write=per_write)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.normal(size=(32, 1)).astype("float32")
    model = kit.sequential(name="reported")
    callback = kit.keras.callbacks.TensorBoard(log_dir=str(tmp_path / "fit"))
    history = model.fit(x, y, epochs=2, batch_size=16, validation_data=(x, y), callbacks=[callback], verbose=0)

    # ml.train.*: the Keras path alone, one series per phase.
    for name in ("ml.train.loss", "ml.train.learning_rate", "ml.train.epochs"):
        points = telemetry.points(name)
        assert {p.attributes["ml.framework"] for p in points} == {kit.framework}, name
        assert {p.attributes["ml.run.name"] for p in points} == {"reported"}, name
    losses = {p.attributes["ml.phase"]: p.value for p in telemetry.points("ml.train.loss")}
    assert sorted(losses) == ["train", "validation"]
    assert losses["validation"] == pytest.approx(history.history["val_loss"][-1], rel=1e-6)
    # The callback's writes: all there, in ml.tensorboard.*.
    writes = {
        (p.attributes["ml.run.name"], p.attributes["ml.summary.tag"]): p.value
        for p in telemetry.points("ml.tensorboard.writes")
    }
    assert writes[("fit/train", "epoch_loss")] == 2
    assert writes[("fit/validation", "epoch_loss")] == 2
    scalars = {
        (p.attributes["ml.run.name"], p.attributes["ml.summary.tag"]): p.value
        for p in telemetry.points("ml.tensorboard.scalar")
    }
    assert scalars[("fit/train", "epoch_loss")] == pytest.approx(history.history["loss"][-1], rel=1e-6)


@pytest.mark.usefixtures("_no_claims")
def test_the_rule_follows_the_fit_not_the_directory_name(telemetry: Any, tmp_path: Path) -> None:
    """A tf.summary program writing under the same root, outside any claimed logdir, still feeds ml.train.*."""
    from otel_ml.keras import KerasInstrumentor

    telemetry.instrument(KerasInstrumentor)
    telemetry.instrument(TfSummaryInstrumentor, summary_logdir_root=str(tmp_path))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.normal(size=(32, 1)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)], name="m")
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, y, epochs=1, batch_size=16, callbacks=[keras.callbacks.TensorBoard(str(tmp_path / "fit"))], verbose=0)
    writer = tf.summary.create_file_writer(str(tmp_path / "custom" / "train"))
    with writer.as_default():
        tf.summary.scalar("loss", 0.25, step=3)
    writer.close()
    by_framework = {
        (p.attributes["ml.framework"], p.attributes["ml.run.name"], p.attributes["ml.phase"]): p.value
        for p in telemetry.points("ml.train.loss")
    }
    assert by_framework[("tf_summary", "custom/train", "train")] == 0.25
    assert {k for k in by_framework if k[0] == "tf_summary"} == {("tf_summary", "custom/train", "train")}


@pytest.mark.usefixtures("_no_claims")
@pytest.mark.parametrize("per_write", [False, True], ids=["files", "per_write"])
def test_the_claim_ends_with_the_fit_a_later_writer_in_the_same_logdir_feeds_training_metrics(
    kit: Any, telemetry: Any, tmp_path: Path, per_write: bool
) -> None:
    """``TensorBoard(log_dir="logs")``, then a custom loop writing ``loss`` under ``logs/``: not silently left out.

    The claim covers the writers the callback creates during the fit, not the directory for the rest of the
    process: the loop's loss reaches ``ml.train.loss`` and its NaN counts ``ml.train.anomalies`` (the
    ``TrainingLossNaN`` alert), while the callback's own ``epoch_loss`` still feeds no ``ml.train.*``.
    """
    from otel_ml.keras import KerasInstrumentor
    from otel_ml.tf_keras import TfKerasInstrumentor

    telemetry.instrument(KerasInstrumentor if kit.name == "keras" else TfKerasInstrumentor)
    telemetry.instrument(TfSummaryInstrumentor, summary_logdir_root=str(tmp_path), summary_per_write=per_write)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.normal(size=(32, 1)).astype("float32")
    model = kit.sequential(name="m")
    model.fit(
        x, y, epochs=2, batch_size=16, callbacks=[kit.keras.callbacks.TensorBoard(str(tmp_path / "logs"))], verbose=0
    )
    writer = tf.summary.create_file_writer(str(tmp_path / "logs" / "train"))  # the callback's own run, even
    with writer.as_default():
        for step, value in enumerate([0.5, 0.25, float("nan")]):
            tf.summary.scalar("loss", value, step=step)
    writer.close()

    summary = {
        (p.attributes["ml.run.name"], p.attributes["ml.phase"]): p.value
        for p in telemetry.points("ml.train.loss")
        if p.attributes["ml.framework"] == "tf_summary"
    }
    assert summary == {("logs/train", "train"): 0.25}  # the loop's last finite loss; no epoch_loss of the fit
    anomalies = {
        (p.attributes["ml.framework"], p.attributes["ml.run.name"]): p.value
        for p in telemetry.points("ml.train.anomalies")
    }
    assert anomalies == {("tf_summary", "logs/train"): 1}
    writes = {
        (p.attributes["ml.run.name"], p.attributes["ml.summary.tag"]): p.value
        for p in telemetry.points("ml.tensorboard.writes")
    }
    assert writes[("logs/train", "epoch_loss")] == 2
    assert writes[("logs/train", "loss")] == 3


@pytest.mark.usefixtures("_no_claims")
@pytest.mark.parametrize("per_write", [False, True], ids=["files", "per_write"])
def test_a_custom_callbacks_own_writer_under_the_log_dir_during_the_fit_is_the_programs(
    kit: Any, telemetry: Any, tmp_path: Path, per_write: bool
) -> None:
    """Only Keras's ``<log_dir>/train`` and ``<log_dir>/validation`` writers are claimed, not every writer of the fit.

    A custom callback that opens ``<log_dir>/custom`` in ``on_train_begin`` and writes ``loss`` is the program's
    own fact: it feeds ``ml.train.loss`` (and its NaN the anomalies); Keras's ``epoch_loss`` still does not.
    """
    from otel_ml.keras import KerasInstrumentor
    from otel_ml.tf_keras import TfKerasInstrumentor

    telemetry.instrument(KerasInstrumentor if kit.name == "keras" else TfKerasInstrumentor)
    telemetry.instrument(TfSummaryInstrumentor, summary_logdir_root=str(tmp_path), summary_per_write=per_write)
    log_dir = tmp_path / "logs"

    class Custom(kit.keras.callbacks.Callback):  # type: ignore[misc, name-defined]
        def on_train_begin(self, logs: Any = None) -> None:
            self.writer = tf.summary.create_file_writer(str(log_dir / "custom"))

        def on_train_end(self, logs: Any = None) -> None:
            with self.writer.as_default():
                tf.summary.scalar("loss", 0.75, step=0)
                tf.summary.scalar("loss", float("inf"), step=1)
            self.writer.close()

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.normal(size=(32, 1)).astype("float32")
    model = kit.sequential(name="m")
    callbacks = [kit.keras.callbacks.TensorBoard(str(log_dir)), Custom()]
    model.fit(x, y, epochs=2, batch_size=16, validation_data=(x, y), callbacks=callbacks, verbose=0)

    summary = {
        (p.attributes["ml.run.name"], p.attributes["ml.phase"]): p.value
        for p in telemetry.points("ml.train.loss")
        if p.attributes["ml.framework"] == "tf_summary"
    }
    assert summary == {("logs/custom", "unknown"): 0.75}
    anomalies = {
        (p.attributes["ml.framework"], p.attributes["ml.run.name"]): p.value
        for p in telemetry.points("ml.train.anomalies")
    }
    assert anomalies == {("tf_summary", "logs/custom"): 1}
    writes = {
        (p.attributes["ml.run.name"], p.attributes["ml.summary.tag"]): p.value
        for p in telemetry.points("ml.tensorboard.writes")
    }
    assert writes[("logs/train", "epoch_loss")] == 2
    assert writes[("logs/validation", "epoch_loss")] == 2
