"""Never break training: idempotence, exact restore, our own errors contained, same results."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import pytest
from keras.src.backend.tensorflow.trainer import TensorFlowTrainer
from keras.src.trainers import data_adapters

import otel_ml
from otel_ml._core import guard as _guard
from otel_ml._core import semconv as sc
from otel_ml._core.guard import error_counts
from otel_ml.keras import KerasInstrumentor
from tests import _keras_models as km

_ORIGINALS = {name: TensorFlowTrainer.__dict__[name] for name in ("fit", "evaluate", "predict")}
_ADAPTER = data_adapters.__dict__["get_data_adapter"]


def _instrument(telemetry, **options):  # type: ignore[no-untyped-def]
    otel_ml.instrument(meter_provider=telemetry.meter_provider, tracer_provider=telemetry.tracer_provider, **options)


def _patch_points(kit) -> list[tuple[object, str]]:  # type: ignore[no-untyped-def]
    """(owner, name) of every function the flavour's instrumentor replaces."""
    if kit.name == "keras":
        return [(TensorFlowTrainer, name) for name in _ORIGINALS] + [(data_adapters, "get_data_adapter")]
    from tf_keras.src.engine import data_adapter, training

    return [(training.Model, name) for name in _ORIGINALS] + [(data_adapter, "get_data_handler")]


def test_uninstrument_restores_the_exact_originals(telemetry, kit) -> None:
    points = _patch_points(kit)
    originals = [owner.__dict__[name] for owner, name in points]
    _instrument(telemetry)
    assert all(owner.__dict__[name] is not original for (owner, name), original in zip(points, originals, strict=True))
    otel_ml.uninstrument()
    assert all(owner.__dict__[name] is original for (owner, name), original in zip(points, originals, strict=True))
    otel_ml.uninstrument()  # twice is harmless
    kit.sequential().fit(*km.data(samples=16), batch_size=16, verbose=0)
    assert telemetry.points(sc.METRIC_TRAIN_STEPS) == []


def test_instrument_twice_counts_once(telemetry) -> None:
    _instrument(telemetry)
    _instrument(telemetry)
    KerasInstrumentor().instrument(meter_provider=telemetry.meter_provider)  # logs and does nothing
    km.sequential().fit(*km.data(samples=32), batch_size=16, verbose=0)
    (steps,) = telemetry.points(sc.METRIC_TRAIN_STEPS)
    assert steps.value == 2
    assert len(telemetry.finished(sc.SPAN_KERAS_FIT)) == 1


def test_reinstrument_after_uninstrument_works(telemetry) -> None:
    _instrument(telemetry)
    otel_ml.uninstrument()
    _instrument(telemetry)
    km.sequential().fit(*km.data(samples=32), batch_size=16, verbose=0)
    (steps,) = telemetry.points(sc.METRIC_TRAIN_STEPS)
    assert steps.value == 2


def test_same_final_loss_as_an_uninstrumented_run(telemetry, kit) -> None:
    def train() -> list[float]:
        kit.keras.utils.set_random_seed(11)
        model = kit.functional()
        x, y = km.data(samples=96, seed=5)
        return model.fit(x, y, batch_size=16, epochs=3, verbose=0, validation_split=0.25).history["val_loss"]

    plain = train()
    _instrument(telemetry)
    assert train() == plain


@pytest.mark.internal_errors_expected
def test_our_own_failure_is_logged_once_and_training_continues(telemetry, monkeypatch, caplog) -> None:
    _instrument(telemetry)
    from otel_ml._training import fit as _fit

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("telemetry bug")

    monkeypatch.setattr(_fit.FitRun, "_step", broken)
    monkeypatch.setattr(_guard, "_seen", {})  # as in a fresh process: nothing logged yet
    with caplog.at_level(logging.WARNING, logger="otel_ml"):
        history = km.sequential().fit(*km.data(samples=64), batch_size=16, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    assert error_counts()[("keras.on_train_batch_end", RuntimeError)] == 8
    logged = [r for r in caplog.records if "telemetry bug" in r.getMessage()]
    assert len(logged) == 1


def test_bad_options_raise_clear_errors(telemetry) -> None:
    with pytest.raises(ValueError, match=r"slow_step_factor=0\.5 is invalid: expected a number > 1"):
        _instrument(telemetry, slow_step_factor=0.5)
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['slow_steps'\]; accepted: \["):
        _instrument(telemetry, slow_steps=1)
    assert not KerasInstrumentor().is_instrumented_by_opentelemetry


def test_bad_env_values_are_logged_and_defaults_used(telemetry, monkeypatch, caplog) -> None:
    monkeypatch.setenv("OTEL_ML_WARMUP_STEPS", "lots")
    with caplog.at_level(logging.ERROR):
        _instrument(telemetry)
    (record,) = [r for r in caplog.records if "OTEL_ML_WARMUP_STEPS" in r.getMessage()]
    assert "expected a whole number >= 0 and <= 1000000; using the default 1" in record.getMessage()
    km.sequential().fit(*km.data(samples=16), batch_size=16, verbose=0)
    assert telemetry.points(sc.METRIC_TRAIN_STEPS)[0].value == 1


def test_samples_with_validation_split_are_exact(telemetry) -> None:
    _instrument(telemetry)
    x, y = km.data(samples=100)
    km.sequential().fit(x, y, batch_size=16, epochs=1, verbose=0, validation_split=0.2)
    (samples,) = telemetry.points(sc.METRIC_TRAIN_SAMPLES)
    assert samples.value == 80
    assert np.isfinite(samples.value)


def _fit_warnings(data: Any) -> list[tuple[str, int, str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        km.sequential().fit(data, epochs=1, verbose=0)
    return [(w.filename, w.lineno, str(w.message)) for w in caught]


def test_keras_warnings_keep_pointing_where_keras_meant(telemetry) -> None:
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices(km.data(samples=32)).batch(16)  # shuffle=True is ignored: a warning
    plain = _fit_warnings(data)
    _instrument(telemetry)
    instrumented = _fit_warnings(data)
    assert plain and instrumented == plain
    assert "otel_ml" not in instrumented[0][0]
