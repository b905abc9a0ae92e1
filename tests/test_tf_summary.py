"""tf.summary instrumentation: exact counts and values, eager and graph, runs, the tag cap."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from otel_ml.tf_summary import TfSummaryInstrumentor

tf = pytest.importorskip("tensorflow")
from tensorflow.python.ops import summary_ops_v2  # noqa: E402

N = 6


def _instrument(telemetry: Any, **options: Any) -> None:
    telemetry.instrument(TfSummaryInstrumentor, **options)


def _by(points: list[Any], **attrs: str) -> list[Any]:
    return [p for p in points if all(p.attributes.get(k) == v for k, v in attrs.items())]


def _value(telemetry: Any, name: str, **attrs: str) -> float:
    found = _by(telemetry.points(name), **attrs)
    assert len(found) == 1, (name, attrs, [dict(p.attributes) for p in telemetry.points(name)])
    return found[0].value


def test_eager_loop_exports_each_write_of_three_tags(telemetry: Any, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    _instrument(telemetry)
    writer = tf.summary.create_file_writer("logs/eager")
    with writer.as_default():
        for step in range(N):
            tf.summary.scalar("loss", 1.0 / (step + 1), step=step)
            tf.summary.scalar("accuracy", step / 10, step=step)
            tf.summary.scalar("grad_norm", step * 3.0, step=step)
    writer.close()  # closing reads the writer's file once more: nothing waits for the follower
    for tag, last in (("loss", 1.0 / N), ("accuracy", (N - 1) / 10), ("grad_norm", (N - 1) * 3.0)):
        attrs = {"ml.run.name": "logs/eager", "ml.summary.tag": tag}
        assert _value(telemetry, "ml.tensorboard.writes", **attrs, **{"ml.summary.kind": "scalar"}) == N
        assert _value(telemetry, "ml.tensorboard.scalar", **attrs) == pytest.approx(last, rel=1e-6)
    assert _value(telemetry, "ml.tensorboard.step", **{"ml.run.name": "logs/eager"}) == N - 1
    # Well-known tags also feed the training metrics, with the Keras path's names and label keys; neither
    # "logs/eager" nor "loss" names a phase, so it is "unknown", never guessed.
    loss = {"ml.phase": "unknown", "ml.model.name": "unknown", "ml.framework": "tf_summary"}
    assert _value(telemetry, "ml.train.loss", **loss) == pytest.approx(1.0 / N, rel=1e-6)
    assert _value(telemetry, "ml.train.metric", **{"ml.metric.name": "accuracy"}) == pytest.approx(0.5)
    assert len(telemetry.points("ml.tensorboard.scalar")) == 3


@pytest.mark.parametrize("per_write", [False, True], ids=["files", "per_write"])
def test_graph_mode_exports_every_step_not_once(telemetry: Any, tmp_path: Path, per_write: bool) -> None:
    _instrument(telemetry, summary_logdir_root=str(tmp_path), summary_per_write=per_write)
    writer = tf.summary.create_file_writer(str(tmp_path / "graph"))

    @tf.function
    def train_step(step: Any) -> None:
        value = tf.cast(step, tf.float32)
        tf.summary.scalar("loss", value * 2.0, step=step)
        tf.summary.scalar("lr", value + 0.5, step=step)
        tf.summary.histogram("weights", tf.stack([value, value + 2.0]), step=step)

    with writer.as_default():
        for step in range(1, N + 1):
            train_step(tf.constant(step, tf.int64))
    writer.close()
    assert train_step.experimental_get_tracing_count() == 1
    for tag, kind in (("loss", "scalar"), ("lr", "scalar"), ("weights", "histogram")):
        attrs = {"ml.run.name": "graph", "ml.summary.tag": tag, "ml.summary.kind": kind}
        assert _value(telemetry, "ml.tensorboard.writes", **attrs) == N
    assert _value(telemetry, "ml.tensorboard.scalar", **{"ml.summary.tag": "loss"}) == 2.0 * N
    assert _value(telemetry, "ml.tensorboard.scalar", **{"ml.summary.tag": "lr"}) == N + 0.5
    stats = {p.attributes["ml.summary.statistic"]: p.value for p in telemetry.points("ml.tensorboard.distribution")}
    assert stats == {"count": 2.0, "min": float(N), "max": float(N + 2), "mean": float(N + 1)}
    assert _value(telemetry, "ml.tensorboard.step", **{"ml.run.name": "graph"}) == N


def test_graph_mode_off_exports_nothing_from_functions(telemetry: Any, tmp_path: Path) -> None:
    _instrument(telemetry, summary_per_write=True, summary_graph_mode=False)
    writer = tf.summary.create_file_writer(str(tmp_path / "off"))

    @tf.function
    def step_fn(step: Any) -> None:
        tf.summary.scalar("loss", 1.0, step=step)

    with writer.as_default():
        step_fn(tf.constant(1, tf.int64))
    writer.close()
    assert telemetry.points("ml.tensorboard.writes") == []


def test_two_writers_are_two_runs_and_pattern_picks_the_name(telemetry: Any, tmp_path: Path) -> None:
    _instrument(telemetry, summary_logdir_root=str(tmp_path), summary_run_name_pattern=r"fit/([^/]+)")
    first = tf.summary.create_file_writer(str(tmp_path / "logs/fit/exp_lr_0.01/20241015-143000"))
    second = tf.summary.create_file_writer(str(tmp_path / "logs/fit/exp_lr_0.1/20241015-150000"))
    for writer, value in ((first, 1.0), (second, 2.0)):
        with writer.as_default(step=0):
            tf.summary.scalar("loss", value)
        writer.close()
    runs = {p.attributes["ml.run.name"]: p.value for p in telemetry.points("ml.tensorboard.scalar")}
    assert runs == {"exp_lr_0.01": 1.0, "exp_lr_0.1": 2.0}


def test_tag_cap_holds_and_counts_drops(telemetry: Any, tmp_path: Path, caplog: Any) -> None:
    _instrument(telemetry, summary_max_tags=3, summary_logdir_root=str(tmp_path))
    writer = tf.summary.create_file_writer(str(tmp_path / "capped"))
    with caplog.at_level(logging.WARNING):
        with writer.as_default():
            for step in range(10):
                tf.summary.scalar(f"loss_{step}", float(step), step=step)
            tf.summary.scalar("loss_0", 42.0, step=10)  # a tag under the cap keeps exporting
        writer.close()
    tags = sorted(p.attributes["ml.summary.tag"] for p in telemetry.points("ml.tensorboard.scalar"))
    assert tags == ["loss_0", "loss_1", "loss_2"]
    assert _value(telemetry, "ml.tensorboard.scalar", **{"ml.summary.tag": "loss_0"}) == 42.0
    assert _value(telemetry, "ml.tensorboard.dropped", **{"ml.run.name": "capped", "ml.summary.kind": "scalar"}) == 7
    assert sum("distinct summary tags" in r.getMessage() for r in caplog.records) == 1


def test_image_text_audio_are_counted_never_exported(telemetry: Any, tmp_path: Path) -> None:
    _instrument(telemetry, summary_logdir_root=str(tmp_path))
    writer = tf.summary.create_file_writer(str(tmp_path / "media"))
    with writer.as_default(step=1):
        tf.summary.image("img", np.zeros((1, 4, 4, 3), np.float32))
        tf.summary.text("note", "secret training text")
        tf.summary.audio("clip", np.zeros((1, 8, 1), np.float32), sample_rate=8000)
    writer.close()
    kinds = {p.attributes["ml.summary.kind"]: p.value for p in telemetry.points("ml.tensorboard.writes")}
    assert kinds == {"image": 1, "text": 1, "audio": 1}
    assert telemetry.points("ml.tensorboard.scalar") == []
    assert "secret" not in repr(telemetry.reader.get_metrics_data())


def _events(logdir: Path) -> list[tuple[str, int, bytes, bytes]]:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    found = []
    for path in sorted(logdir.glob("*tfevents*")):
        for event in EventFileLoader(str(path)).Load():
            for v in event.summary.value:
                found.append((v.tag, event.step, v.tensor.SerializeToString(), v.metadata.SerializeToString()))
    return found


def _write_everything(logdir: Path) -> None:
    writer = tf.summary.create_file_writer(str(logdir))

    @tf.function
    def in_graph(step: Any) -> None:
        tf.summary.scalar("g", tf.cast(step, tf.float32) / 3.0, step=step)
        tf.summary.histogram("gh", tf.range(5, dtype=tf.float32) * tf.cast(step, tf.float32), step=step)

    with writer.as_default():
        for step in range(3):
            tf.summary.scalar("loss", 0.1 * step, step=step)
            tf.summary.histogram("h", np.arange(7.0) * step, step=step)
            tf.summary.text("t", f"text {step}", step=step)
            in_graph(tf.constant(step, tf.int64))
    writer.close()


def test_event_files_are_identical_with_and_without(telemetry: Any, tmp_path: Path) -> None:
    _write_everything(tmp_path / "plain")
    _instrument(telemetry, summary_per_write=True)  # the path that touches what is written
    _write_everything(tmp_path / "instrumented")
    plain = _events(tmp_path / "plain")
    assert len(plain) == 15
    assert _events(tmp_path / "instrumented") == plain


def test_uninstrument_restores_the_originals(telemetry: Any, tmp_path: Path) -> None:
    original_write = summary_ops_v2.__dict__["write"]
    original_create = summary_ops_v2.__dict__["create_file_writer_v2"]
    original_close = summary_ops_v2._ResourceSummaryWriter.__dict__["close"]
    _instrument(telemetry)
    _instrument(telemetry)  # twice is harmless
    assert tf.summary.write is original_write  # the default path adds nothing to a write
    assert tf.summary.create_file_writer is not original_create
    assert summary_ops_v2._ResourceSummaryWriter.__dict__["close"] is not original_close
    TfSummaryInstrumentor().uninstrument()
    assert summary_ops_v2._ResourceSummaryWriter.__dict__["close"] is original_close
    _instrument(telemetry, summary_per_write=True)
    assert tf.summary.write is not original_write
    assert tf.compat.v2.summary.write is tf.summary.write
    TfSummaryInstrumentor().uninstrument()
    assert summary_ops_v2.__dict__["write"] is original_write
    assert summary_ops_v2.__dict__["create_file_writer_v2"] is original_create
    assert tf.summary.write is original_write
    assert tf.compat.v2.summary.write is original_write
    assert tf.summary.create_file_writer is original_create
    after = tf.summary.create_file_writer(str(tmp_path / "after"))
    with after.as_default(step=0):
        tf.summary.scalar("loss", 1.0)
    after.close()
    assert telemetry.points("ml.tensorboard.writes") == []


def test_bad_option_is_a_clear_error(telemetry: Any) -> None:
    with pytest.raises(ValueError, match=r"summary_max_tags=0 is invalid: expected a whole number >= 1"):
        _instrument(telemetry, summary_max_tags=0)
    with pytest.raises(ValueError, match=r"summary_run_name_pattern='\(' is invalid: expected a Python regular"):
        _instrument(telemetry, summary_run_name_pattern="(")


@pytest.mark.parametrize("hook", ["write", "create_file_writer", "close"])
def test_a_warning_through_our_wrappers_points_at_the_callers_line(hook: str) -> None:
    """Each tf.summary wrapper adds a frame that ``warnings`` skips, like the Keras wrappers."""
    import inspect
    import warnings

    import wrapt
    from opentelemetry.metrics import NoOpMeterProvider

    from otel_ml._summary import RunNamer, SummaryExporter, SummaryInstruments
    from otel_ml.tf_summary._patch import SummaryWrappers
    from otel_ml.tf_summary._writers import WriterHooks, WriterRegistry

    writers = WriterRegistry(RunNamer())
    exporter = SummaryExporter(SummaryInstruments.create(NoOpMeterProvider().get_meter("t")), 8, "tf_summary")
    hooks = WriterHooks(writers, 1000, None, None)
    wrapper = {
        "write": SummaryWrappers(exporter, writers, graph_mode=True).write,
        "create_file_writer": hooks.create_file_writer,
        "close": hooks.close,
    }[hook]

    def framework_function(*args: Any, **kwargs: Any) -> None:
        warnings.warn("from the framework", UserWarning, stacklevel=2)

    wrapped = wrapt.FunctionWrapper(framework_function, wrapper)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wrapped("tag", 1.0)
        line = inspect.currentframe().f_lineno - 1  # type: ignore[union-attr]
    (warning,) = caught
    assert (warning.filename, warning.lineno) == (__file__, line)


# --- well-known tags: the accepted forms, the phase, NaN losses (docs/tf_summary.md) ----------------


@pytest.mark.parametrize(
    ("tag", "run", "expected"),
    [
        ("loss", "logs/gradient_tape/train", ("loss", "train", "loss")),
        ("epoch_loss", "logs/fit/validation", ("loss", "validation", "loss")),
        ("batch_loss", "logs/fit/train", ("loss", "train", "loss")),
        ("val_loss", "logs/x", ("loss", "validation", "loss")),
        ("train/loss", "logs/x", ("loss", "train", "loss")),
        ("eval/accuracy", "logs/x", ("metric", "validation", "accuracy")),
        # <phase>_<name>: PyTorch Lightning's self.log("train_loss") / ("val_loss"), any phase word
        ("train_loss", "lightning_logs/version_0", ("loss", "train", "loss")),
        ("Train_Loss", "lightning_logs/version_0", ("loss", "train", "loss")),
        ("valid_loss", "lightning_logs/version_0", ("loss", "validation", "loss")),
        ("test_accuracy", "lightning_logs/version_0", ("metric", "test", "accuracy")),
        ("other_loss", "logs/train", None),
        # PyTorch's documented tags, <name>/<phase>, any case
        ("Loss/train", "runs/Jan01_12-00-00_host", ("loss", "train", "loss")),
        ("Loss/test", "runs/Jan01_12-00-00_host", ("loss", "test", "loss")),
        ("Accuracy/train", "runs/x", ("metric", "train", "accuracy")),
        ("Accuracy/TEST", "runs/x", ("metric", "test", "accuracy")),
        ("LOSS", "logs/x/Validation", ("loss", "validation", "loss")),
        # the tag's phase beats the run's
        ("Loss/test", "logs/train", ("loss", "test", "loss")),
        # nothing names a phase: unknown, never train (the hparams tutorial's test accuracy)
        ("accuracy", "logs/hparam_tuning/run-0", ("metric", "unknown", "accuracy")),
        ("loss", "runs/Jan01_12-00-00_host", ("loss", "unknown", "loss")),
        ("learning_rate", "logs/x", ("learning_rate", "unknown", "learning_rate")),
        ("epoch_learning_rate", "logs/fit/train", ("learning_rate", "train", "learning_rate")),
        # not well-known
        ("loss/extra/train", "logs/train", None),
        ("Loss/other", "logs/train", None),
        ("grad_norm", "logs/train", None),
        ("losses", "logs/train", None),
    ],
)
def test_well_known_tag_forms(tag: str, run: str, expected: tuple[str, str, str] | None) -> None:
    from otel_ml._summary._export import well_known

    assert well_known(tag, run) == expected


@pytest.mark.parametrize("per_write", [False, True], ids=["files", "per_write"])
def test_a_non_finite_loss_counts_a_nan_loss_anomaly_as_on_the_keras_path(
    telemetry: Any, tmp_path: Path, per_write: bool
) -> None:
    _instrument(telemetry, summary_logdir_root=str(tmp_path), summary_per_write=per_write)
    train = tf.summary.create_file_writer(str(tmp_path / "tape" / "train"))
    test = tf.summary.create_file_writer(str(tmp_path / "tape" / "test"))
    plain = tf.summary.create_file_writer(str(tmp_path / "plain"))
    with train.as_default():
        for step, value in enumerate([1.0, float("nan"), float("inf"), 0.5]):
            tf.summary.scalar("loss", value, step=step)
            tf.summary.scalar("accuracy", float("nan"), step=step)  # not a loss: no anomaly
    with test.as_default():
        tf.summary.scalar("loss", float("nan"), step=0)  # evaluation mirrors training: not counted twice
    with plain.as_default():
        tf.summary.scalar("Loss/train", float("nan"), step=0)
        tf.summary.scalar("loss", float("-inf"), step=0)  # no phase: could be training, so counted
    for writer in (train, test, plain):
        writer.close()
    anomalies = {tuple(sorted(p.attributes.items())): p.value for p in telemetry.points("ml.train.anomalies")}

    def key(run: str) -> tuple[tuple[str, str], ...]:
        return tuple(
            sorted(
                {
                    "ml.anomaly.kind": "nan_loss",
                    "ml.framework": "tf_summary",
                    "ml.model.name": "unknown",
                    "ml.run.name": run,
                }.items()
            )
        )

    assert anomalies == {key("tape/train"): 2, key("plain"): 2}
    nonfinite = {
        (p.attributes["ml.run.name"], p.attributes["ml.summary.tag"]): p.value
        for p in telemetry.points("ml.tensorboard.nonfinite")
    }
    assert nonfinite == {
        ("tape/train", "loss"): 2,
        ("tape/train", "accuracy"): 4,
        ("tape/test", "loss"): 1,
        ("plain", "Loss/train"): 1,
        ("plain", "loss"): 1,
    }
    # The gauge keeps the last finite loss.
    assert _value(telemetry, "ml.train.loss", **{"ml.run.name": "tape/train"}) == 0.5


def test_hparams_shape_no_phase_anywhere_is_unknown_never_train(telemetry: Any, tmp_path: Path) -> None:
    """The hparams tutorial: each run writes its test accuracy once, at step 1, with no phase in path or tag."""
    _instrument(telemetry, summary_logdir_root=str(tmp_path / "logs"))
    for session, accuracy in enumerate((0.8125, 0.875)):
        writer = tf.summary.create_file_writer(str(tmp_path / "logs" / "hparam_tuning" / f"run-{session}"))
        with writer.as_default():
            tf.summary.scalar("accuracy", accuracy, step=1)
        writer.close()
    metrics = {
        (p.attributes["ml.run.name"], p.attributes["ml.phase"], p.attributes["ml.model.name"]): p.value
        for p in telemetry.points("ml.train.metric")
    }
    assert metrics == {
        ("hparam_tuning/run-0", "unknown", "unknown"): 0.8125,
        ("hparam_tuning/run-1", "unknown", "unknown"): 0.875,
    }


@pytest.mark.parametrize("per_write", [False, True], ids=["files", "per_write"])
def test_a_bytes_logdir_that_is_not_utf8_is_followed_under_an_escaped_run_name(
    telemetry: Any, tmp_path: Path, per_write: bool
) -> None:
    """``create_file_writer(b"logs/caf\\xe9/train")`` (TensorFlow takes bytes; the only way to a latin-1 logdir).

    It was silently not followed: no value, no line. Now it is a run named as the bridge names it (``\\xNN``).
    """
    import os

    telemetry.instrument(TfSummaryInstrumentor, summary_logdir_root=str(tmp_path), summary_per_write=per_write)
    writer = tf.summary.create_file_writer(os.fsencode(str(tmp_path)) + b"/logs/caf\xe9/train")
    with writer.as_default():
        tf.summary.scalar("loss", float("nan"), step=0)
        tf.summary.scalar("loss", 0.5, step=1)
    writer.close()
    writes = {
        (p.attributes["ml.run.name"], p.attributes["ml.summary.tag"]): p.value
        for p in telemetry.points("ml.tensorboard.writes")
    }
    assert writes == {("logs/caf\\xe9/train", "loss"): 2}
    losses = {
        (p.attributes["ml.run.name"], p.attributes["ml.phase"]): p.value for p in telemetry.points("ml.train.loss")
    }
    assert losses == {("logs/caf\\xe9/train", "train"): 0.5}
    assert {p.attributes["ml.run.name"]: p.value for p in telemetry.points("ml.train.anomalies")} == {
        "logs/caf\\xe9/train": 1
    }
