"""The default tf.summary path: values read back from the event files equal TensorBoard's own reading.

Every test compares with TensorBoard's ``EventAccumulator`` over the same
logdir: the count of writes of each tag, and the last value of each scalar.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from otel_ml.tf_summary import TfSummaryInstrumentor
from tests import _net
from tests._telemetry import Telemetry

tf = pytest.importorskip("tensorflow")
STEPS = 7


def _instrument(telemetry: Telemetry, root: Path, **options: Any) -> None:
    TfSummaryInstrumentor().instrument(
        meter_provider=telemetry.meter_provider, summary_logdir_root=str(root), **options
    )


def _tensorboard_reading(logdir: Path) -> dict[str, tuple[int, float | None]]:
    """tag -> (writes, last scalar value or None), as TensorBoard reads ``logdir``."""
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.util import tensor_util

    acc = ea.EventAccumulator(str(logdir), size_guidance={ea.TENSORS: 0})
    acc.Reload()
    found = {}
    for tag in acc.Tags()["tensors"]:
        events = acc.Tensors(tag)
        scalar = acc.SummaryMetadata(tag).plugin_data.plugin_name == "scalars"
        found[tag] = (len(events), float(tensor_util.make_ndarray(events[-1].tensor_proto)) if scalar else None)
    return found


def _our_reading(telemetry: Telemetry, run: str) -> dict[str, tuple[int, float | None]]:
    writes = {
        p.attributes["ml.summary.tag"]: p.value
        for p in telemetry.points("ml.tensorboard.writes")
        if p.attributes["ml.run.name"] == run
    }
    scalars = {
        p.attributes["ml.summary.tag"]: p.value
        for p in telemetry.points("ml.tensorboard.scalar")
        if p.attributes["ml.run.name"] == run
    }
    return {tag: (count, scalars.get(tag)) for tag, count in writes.items()}


def test_eager_writes_equal_tensorboards_reading(telemetry: Telemetry, tmp_path: Path) -> None:
    _instrument(telemetry, tmp_path)
    writer = tf.summary.create_file_writer(str(tmp_path / "eager"))
    with writer.as_default():
        for step in range(STEPS):
            tf.summary.scalar("loss", 1.0 / (step + 3), step=step)
            tf.summary.scalar("accuracy", step / 7, step=step)
            tf.summary.histogram("weights", np.arange(5.0) * step, step=step)
            tf.summary.text("note", f"step {step}", step=step)
    writer.close()
    expected = _tensorboard_reading(tmp_path / "eager")
    assert expected["loss"] == (STEPS, pytest.approx(1.0 / (STEPS + 2)))
    assert _our_reading(telemetry, "eager") == expected
    assert [p.value for p in telemetry.points("ml.tensorboard.step")] == [STEPS - 1]


def test_tf_function_writes_equal_tensorboards_reading(telemetry: Telemetry, tmp_path: Path) -> None:
    _instrument(telemetry, tmp_path)
    writer = tf.summary.create_file_writer(str(tmp_path / "graph"))

    @tf.function
    def train_step(step: Any) -> None:
        value = tf.cast(step, tf.float32)
        tf.summary.scalar("loss", 10.0 / (value + 1.0), step=step)
        tf.summary.scalar("accuracy", value / 10.0, step=step)
        tf.summary.histogram("weights", tf.stack([value, value + 2.0]), step=step)

    with writer.as_default():
        for step in range(STEPS):
            train_step(tf.constant(step, tf.int64))
    writer.close()
    assert train_step.experimental_get_tracing_count() == 1
    expected = _tensorboard_reading(tmp_path / "graph")
    assert expected["loss"][0] == STEPS
    assert _our_reading(telemetry, "graph") == expected


def test_keras_tensorboard_callback_equals_tensorboards_reading(telemetry: Telemetry, tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    _instrument(telemetry, tmp_path)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.integers(0, 2, size=(32, 1)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy"])
    callback = keras.callbacks.TensorBoard(log_dir=str(tmp_path / "fit"), histogram_freq=1)
    model.fit(x, y, epochs=3, batch_size=16, validation_data=(x, y), callbacks=[callback], verbose=0)
    for run in ("train", "validation"):
        expected = _tensorboard_reading(tmp_path / "fit" / run)
        assert expected["epoch_loss"][0] == 3
        assert _our_reading(telemetry, f"fit/{run}") == expected
    phases = {p.attributes["ml.phase"] for p in telemetry.points("ml.train.loss")}
    assert phases == {"train", "validation"}


def test_a_value_is_exported_within_the_flush_bound_without_close(telemetry: Telemetry, tmp_path: Path) -> None:
    flush = 0.2
    _instrument(telemetry, tmp_path, summary_flush_seconds=flush)
    writer = tf.summary.create_file_writer(str(tmp_path / "live"))
    with writer.as_default():
        tf.summary.scalar("loss", 0.75, step=3)  # one write, then silence: only our flush gets it out
    written = time.monotonic()
    while not telemetry.points("ml.tensorboard.scalar") and time.monotonic() - written < 10:
        time.sleep(0.02)
    elapsed = time.monotonic() - written
    assert [p.value for p in telemetry.points("ml.tensorboard.scalar")] == [0.75]
    # Documented bound: flush + one read interval (0.4 s here); 1.6 s more for a loaded 2-core machine.
    assert elapsed < 2 * flush + 1.6, elapsed
    writer.close()


def test_writers_without_flush_millis_get_the_shorter_default(telemetry: Telemetry, tmp_path: Path) -> None:
    from tensorflow.python.ops import summary_ops_v2

    seen: list[Any] = []
    original = summary_ops_v2.gen_summary_ops.create_summary_file_writer

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(int(kwargs["flush_millis"]))
        return original(*args, **kwargs)

    summary_ops_v2.gen_summary_ops.create_summary_file_writer = spy
    try:
        _instrument(telemetry, tmp_path, summary_flush_seconds=2.5)
        tf.summary.create_file_writer(str(tmp_path / "a")).close()
        tf.summary.create_file_writer(str(tmp_path / "b"), flush_millis=777).close()
    finally:
        summary_ops_v2.gen_summary_ops.create_summary_file_writer = original
    assert seen == [2500, 777]


_EXIT_SCRIPT = """
import sys
import otel_ml
otel_ml.instrument(summary_flush_seconds=0.2)
import tensorflow as tf
writer = tf.summary.create_file_writer(sys.argv[1])
with writer.as_default():
    tf.summary.scalar("loss", 0.75, step=1)
print("written", flush=True)
sys.stdin.readline()
with writer.as_default():
    for step in range(2, 12):  # ten more writes, then exit at once: no flush, no close
        tf.summary.scalar("loss", step / 100, step=step)
    tf.summary.scalar("accuracy", 0.5, step=11)
"""


def _last_console_export(text: str) -> dict[str, Any]:
    """The last JSON document the console exporter printed (it exports once more at shutdown)."""
    decoder, found, index = json.JSONDecoder(), None, text.find("{")
    while 0 <= index < len(text):
        found, end = decoder.raw_decode(text, index)
        index = text.find("{", end)
    assert found is not None, text
    return found


def _writes(export: dict[str, Any]) -> dict[str, int]:
    return {
        point["attributes"]["ml.summary.tag"]: point["value"]
        for rm in export["resource_metrics"]
        for sm in rm["scope_metrics"]
        for metric in sm["metrics"]
        if metric["name"] == "ml.tensorboard.writes"
        for point in metric["data"]["data_points"]
    }


@pytest.mark.slow
def test_metrics_endpoint_is_fresh_and_nothing_is_missing_at_exit(tmp_path: Path) -> None:
    port = _net.free_port()
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "OTEL_METRICS_EXPORTER": "otel_ml_prometheus,console",
        "OTEL_METRIC_EXPORT_INTERVAL": "600000",  # the console exporter prints only at exit
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
    }
    args = [sys.executable, "-c", _EXIT_SCRIPT, str(tmp_path / "run")]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "written"
        written = time.monotonic()

        def scraped() -> bool | None:
            body = _net.get(f"http://127.0.0.1:{port}/metrics")[2]
            return True if 'ml_tensorboard_scalar{ml_run_name="run",ml_summary_tag="loss"' in body else None

        _net.wait_for(scraped, timeout=10, what="the written value on /metrics", interval=0.05)
        elapsed = time.monotonic() - written
        out, _ = proc.communicate("go\n", timeout=120)
    finally:
        _net.stop(proc)  # type: ignore[arg-type]  # text mode: stop() only signals and waits
    # Documented bound: flush (0.2 s) + one read interval (0.2 s); 1.6 s more for a loaded machine and the scrape.
    assert elapsed < 2.0, elapsed
    assert proc.returncode == 0
    assert _writes(_last_console_export(out)) == {"loss": 11, "accuracy": 1}
