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
