"""Exact figures at the edges of ``fit`` (issue 25), on both Keras flavours through the ``kit`` fixture.

- steps_per_epoch below one pass over array data: Keras 3 ends an epoch
  early where the data runs out and starts the next at the data's first
  batch; Keras 2 repeats the data without a break. Either way the short
  batch is where the data runs out, and its samples and loss are exact.
- a loss only from ``add_loss`` (no compiled loss): Keras 2 weighs each batch
  by 1 in its loss ``Mean``; samples come from the data, never from that weight.
- the fit span's batch size, epochs run and starting epoch.
- a fit inside a fit's callback, reported on its own under the outer fit's span.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import otel_ml
from otel_ml._core import semconv as sc
from tests import _keras_models as km


def _instrument(telemetry: Any) -> None:
    otel_ml.instrument(meter_provider=telemetry.meter_provider, tracer_provider=telemetry.tracer_provider)


def _by_model(telemetry: Any, name: str, model: str, phase: str | None = None) -> list[Any]:
    points = telemetry.model_points(name, model)
    return [p for p in points if phase is None or p.attributes.get(sc.ML_PHASE) == phase]


def _value(telemetry: Any, name: str, model: str, phase: str | None = None) -> float:
    (point,) = _by_model(telemetry, name, model, phase)
    return float(point.value)


@pytest.mark.parametrize("epochs", [4, 5])
def test_steps_per_epoch_below_the_array_data(telemetry, kit, epochs: int) -> None:  # type: ignore[no-untyped-def]
    """300 rows in batches of 64 (four full, one of 44), 3 steps per epoch."""
    _instrument(telemetry)
    x, y = km.data(samples=300)
    model = kit.frozen(name="spe_short")
    model.fit(x, y, batch_size=64, steps_per_epoch=3, epochs=epochs, verbose=0, shuffle=False)
    starts = [0, 64, 128, 192, 256]
    if kit.name == "keras":
        # Each epoch of 3 steps, every other one cut short at the 44-row batch.
        positions = [p for e in range(epochs) for p in ([0, 1, 2] if e % 2 == 0 else [3, 4])]
    else:
        positions = [k % 5 for k in range(3 * epochs)]
    sizes = [44 if p == 4 else 64 for p in positions]
    last = starts[positions[-1]]
    truth = float(np.mean(y[last : last + sizes[-1]] ** 2, dtype="float64"))
    assert model.optimizer.iterations.numpy() == len(positions)
    assert _value(telemetry, sc.METRIC_TRAIN_STEPS, "spe_short") == len(positions)
    assert _value(telemetry, sc.METRIC_TRAIN_SAMPLES, "spe_short") == sum(sizes)
    assert _value(telemetry, sc.METRIC_TRAIN_LOSS, "spe_short", sc.PHASE_TRAIN) == pytest.approx(truth, rel=1e-5)


def test_steps_per_epoch_below_the_array_data_in_executions_of_two(telemetry, kit) -> None:  # type: ignore[no-untyped-def]
    """As above with ``steps_per_execution=2``: Keras 3 runs executions of two steps, the one at the end
    of the data holding one, and reports the index of two; steps are the optimizer's, samples exact."""
    _instrument(telemetry)
    x, y = km.data(samples=300)
    model = kit.frozen(name="spe_short_exec")
    model.compile(optimizer=kit.keras.optimizers.SGD(0.0), loss="mse", steps_per_execution=2)
    model.fit(x, y, batch_size=64, steps_per_epoch=3, epochs=4, verbose=0, shuffle=False)
    if kit.name == "keras":
        # Epochs of executions [0, 1] [2, 3], then [4] where the data runs out; twice.
        steps, samples, last = 10, 600, (256, 300)
    else:
        # The data repeats: 12 steps at positions 0..4, 0..4, 0, 1, in executions of two and, to end each
        # epoch of 3, of one: the last execution holds position 1 alone.
        steps, samples, last = 12, 12 * 64 - 2 * 20, (64, 128)
    assert model.optimizer.iterations.numpy() == steps
    assert _value(telemetry, sc.METRIC_TRAIN_STEPS, "spe_short_exec") == steps
    assert _value(telemetry, sc.METRIC_TRAIN_SAMPLES, "spe_short_exec") == samples
    truth = float(np.mean(y[last[0] : last[1]] ** 2, dtype="float64"))  # the last execution's mean loss
    assert _value(telemetry, sc.METRIC_TRAIN_LOSS, "spe_short_exec", sc.PHASE_TRAIN) == pytest.approx(truth, rel=1e-5)


def _endpoint_model(k: Any, name: str) -> Any:
    """The endpoint-layer pattern: the loss comes from ``add_loss`` in a layer that sees the targets.

    Zero weights and a learning rate of 0 keep every logit at 0, so a batch's
    loss is log(2) times the mean of its sample weights, known exactly.
    """

    class LogisticEndpoint(k.layers.Layer):  # type: ignore[misc,name-defined]
        def __init__(self, **kwargs: Any) -> None:
            k.layers.Layer.__init__(self, **kwargs)
            self.loss_fn = k.losses.BinaryCrossentropy(from_logits=True)

        def call(self, logits: Any, targets: Any = None, sample_weight: Any = None) -> Any:
            if targets is not None:
                self.add_loss(self.loss_fn(targets, logits, sample_weight))
            return k.activations.sigmoid(logits)

    inputs = k.Input((4,), name="inputs")
    targets = k.Input((1,), name="targets")
    weights = k.Input((1,), name="sample_weight")
    logits = k.layers.Dense(1, kernel_initializer="zeros", bias_initializer="zeros")(inputs)
    model = k.Model([inputs, targets, weights], LogisticEndpoint()(logits, targets, weights), name=name)
    model.compile(k.optimizers.SGD(learning_rate=0.0))
    return model


@pytest.mark.parametrize("data", ["dict", "tf.data", "tf.data-prefetch", "tf.data-map"])
def test_loss_only_from_add_loss(telemetry, kit, data: str) -> None:  # type: ignore[no-untyped-def]
    """200 rows in batches of 32 (six full, one of 8), 2 epochs: samples and the short last batch's loss."""
    import tensorflow as tf

    _instrument(telemetry)
    rows, size = 200, 32
    x, _ = km.data(samples=rows)
    w = (np.arange(rows, dtype="float32") / rows).reshape(-1, 1)
    features = {"inputs": x, "targets": (x[:, :1] > 0).astype("float32"), "sample_weight": w}
    model = _endpoint_model(kit.keras, "endpoint")
    if data == "dict":
        model.fit(features, batch_size=size, epochs=2, verbose=0, shuffle=False)
    else:
        ds = tf.data.Dataset.from_tensor_slices(features).batch(size)
        if data.endswith("prefetch"):
            ds = ds.prefetch(2)
        elif data.endswith("map"):
            ds = ds.map(lambda batch: batch)  # after the batch: the pipeline no longer declares its batch size
        model.fit(ds, epochs=2, verbose=0)
    truth = float(np.log(2.0) * np.mean(w[192:200], dtype="float64"))
    assert model.optimizer.iterations.numpy() == 14
    assert _value(telemetry, sc.METRIC_TRAIN_STEPS, "endpoint") == 14
    if data.endswith("map") and kit.name == "tf_keras":
        # Keras 2 counts batches here, and the data says no batch size: samples absent, never guessed.
        assert _by_model(telemetry, sc.METRIC_TRAIN_SAMPLES, "endpoint") == []
    else:
        assert _value(telemetry, sc.METRIC_TRAIN_SAMPLES, "endpoint") == 2 * rows
    # The batch losses are weighed with Keras's own count (per batch on Keras 2): exact either way.
    assert _value(telemetry, sc.METRIC_TRAIN_LOSS, "endpoint", sc.PHASE_TRAIN) == pytest.approx(truth, rel=1e-5)


def _batches(k: Any, x: np.ndarray, y: np.ndarray, size: int) -> Any:
    """A PyDataset (Keras 2: Sequence) that serves batches of ``size`` rows, whatever fit's ``batch_size=``."""
    base = k.utils.PyDataset if hasattr(k.utils, "PyDataset") else k.utils.Sequence

    class Batches(base):  # type: ignore[misc,valid-type]
        def __len__(self) -> int:
            return -(-len(x) // size)

        def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
            return x[i * size : (i + 1) * size], y[i * size : (i + 1) * size]

    return Batches()


def test_fit_span_batch_size_comes_from_the_data(telemetry, kit) -> None:  # type: ignore[no-untyped-def]
    """Keras ignores ``batch_size=`` for a PyDataset, which does not declare its own: the span leaves it out."""
    _instrument(telemetry)
    x, y = km.data(samples=96)
    model = kit.sequential(name="arrays")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    kwargs = {"batch_size": 64} if kit.name == "keras" else {}  # Keras 2 refuses batch_size= with a Sequence
    kit.sequential(name="pydataset").fit(_batches(kit.keras, x, y, 32), epochs=1, verbose=0, **kwargs)
    spans = {s.attributes[sc.ML_MODEL_NAME]: s for s in telemetry.finished(sc.SPAN_KERAS_FIT)}
    assert spans["arrays"].attributes[sc.ML_BATCH_SIZE] == 32
    assert sc.ML_BATCH_SIZE not in spans["pydataset"].attributes
    assert spans["pydataset"].attributes[sc.ML_STEPS_PER_EPOCH] == 3
    assert _value(telemetry, sc.METRIC_TRAIN_SAMPLES, "pydataset") == 96  # counted by Keras's loss Mean


def test_fit_span_epochs_are_those_that_ran_from_initial_epoch(telemetry, kit) -> None:  # type: ignore[no-untyped-def]
    _instrument(telemetry)
    x, y = km.data(samples=32)
    model = kit.sequential(name="resumed")
    model.fit(x, y, batch_size=16, epochs=4, initial_epoch=2, verbose=0)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    first, second = telemetry.finished(sc.SPAN_KERAS_FIT)
    assert (first.attributes[sc.ML_EPOCHS], first.attributes[sc.ML_EPOCH_START]) == (2, 2)
    assert (second.attributes[sc.ML_EPOCHS], second.attributes[sc.ML_EPOCH_START]) == (1, 0)
    assert _value(telemetry, sc.METRIC_TRAIN_EPOCHS, "resumed") == 3
    assert sorted(s.attributes[sc.ML_EPOCH] for s in telemetry.finished(sc.SPAN_KERAS_EPOCH)) == [0, 2, 3]


def test_fit_span_epochs_after_a_backup_and_restore_resume(telemetry, kit, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A job killed after epoch 3 (0-based) and started again with the same ``epochs=10`` runs epochs 4-9."""

    class Interrupt(kit.keras.callbacks.Callback):  # type: ignore[misc,name-defined]
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if epoch == 3:
                raise km.Boom("preempted")

    _instrument(telemetry)
    x, y = km.data(samples=32)
    backup = kit.keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    model = kit.sequential(name="restored")
    with pytest.raises(km.Boom):
        model.fit(x, y, batch_size=16, epochs=10, verbose=0, callbacks=[backup, Interrupt()])
    model = kit.sequential(name="restored")
    model.fit(
        x,
        y,
        batch_size=16,
        epochs=10,
        verbose=0,
        callbacks=[kit.keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))],
    )
    first, second = telemetry.finished(sc.SPAN_KERAS_FIT)
    assert (first.attributes[sc.ML_EPOCHS], first.attributes[sc.ML_EPOCH_START]) == (4, 0)
    assert (second.attributes[sc.ML_EPOCHS], second.attributes[sc.ML_EPOCH_START]) == (6, 4)
    assert second.attributes[sc.ML_STEP] == 12


def test_a_fit_inside_a_fit_is_reported_on_its_own(telemetry, kit) -> None:  # type: ignore[no-untyped-def]
    """A probe trained at each epoch end of another fit: each fit its figures and its span, under the outer one."""
    x, y = km.data(samples=100)  # outer: 7 steps per epoch, the last of 4 rows
    px, py = km.data(samples=48, seed=1)  # probe: 3 steps per fit

    class TrainProbe(kit.keras.callbacks.Callback):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            kit.keras.callbacks.Callback.__init__(self)
            self.probe = kit.frozen(name="probe")

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.probe.fit(px, py, batch_size=16, epochs=1, verbose=0, shuffle=False)

    _instrument(telemetry)
    outer = kit.frozen(name="outer")
    outer.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False, callbacks=[TrainProbe()])
    assert _value(telemetry, sc.METRIC_TRAIN_STEPS, "outer") == 14
    assert _value(telemetry, sc.METRIC_TRAIN_SAMPLES, "outer") == 200
    outer_loss = float(np.mean(y[96:] ** 2, dtype="float64"))
    assert _value(telemetry, sc.METRIC_TRAIN_LOSS, "outer", sc.PHASE_TRAIN) == pytest.approx(outer_loss, rel=1e-5)
    assert _value(telemetry, sc.METRIC_TRAIN_STEPS, "probe") == 6
    assert _value(telemetry, sc.METRIC_TRAIN_SAMPLES, "probe") == 96
    assert _value(telemetry, sc.METRIC_TRAIN_EPOCHS, "probe") == 2
    probe_loss = float(np.mean(py[32:] ** 2, dtype="float64"))
    assert _value(telemetry, sc.METRIC_TRAIN_LOSS, "probe", sc.PHASE_TRAIN) == pytest.approx(probe_loss, rel=1e-5)
    fits = telemetry.finished(sc.SPAN_KERAS_FIT)
    (top,) = [s for s in fits if s.attributes[sc.ML_MODEL_NAME] == "outer"]
    probes = [s for s in fits if s.attributes[sc.ML_MODEL_NAME] == "probe"]
    assert len(probes) == 2
    assert all(s.parent is not None and s.parent.span_id == top.context.span_id for s in probes)
    assert [s.attributes[sc.ML_STEP] for s in probes] == [3, 3]
    assert top.attributes[sc.ML_STEP] == 14
    # The outer fit's epochs are its own: two, children of its span.
    outer_epochs = [s for s in telemetry.finished(sc.SPAN_KERAS_EPOCH) if s.parent.span_id == top.context.span_id]
    assert len(outer_epochs) == 2
