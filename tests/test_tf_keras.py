"""What is Keras 2's own: its DataHandler inputs, optimizers, tf.keras under TF_USE_LEGACY_KERAS, strategies.

The behaviour both Keras flavours share is tested once for both, through the
``kit`` fixture, in the test_keras_*.py files.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import otel_ml
from otel_ml._core import semconv as sc
from otel_ml.tf_keras import TfKerasInstrumentor
from tests import _keras_models as km

KIT = km.kit("tf_keras")


def _instrument(telemetry, **options):  # type: ignore[no-untyped-def]
    otel_ml.instrument(meter_provider=telemetry.meter_provider, tracer_provider=telemetry.tracer_provider, **options)


def _one(telemetry, name):  # type: ignore[no-untyped-def]
    points = [p for p in telemetry.points(name) if p.attributes.get(sc.ML_PHASE, sc.PHASE_TRAIN) == sc.PHASE_TRAIN]
    assert len(points) == 1, [dict(p.attributes) for p in points]
    return points[0].value


def _staircase() -> tuple[np.ndarray, np.ndarray]:
    """100 samples in batches of 16 where batch i has y = i+1: the last (4 samples) has loss 49 under ``frozen``."""
    x, _ = km.data(samples=100)
    return x, np.repeat(np.arange(1, 8, dtype="float32"), 16)[:100].reshape(-1, 1)


class _Batches(tf_keras.utils.Sequence):
    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        super().__init__()
        self.x, self.y = x, y

    def __len__(self) -> int:
        return 7

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.x[i * 16 : (i + 1) * 16], self.y[i * 16 : (i + 1) * 16]


@pytest.mark.parametrize("kind", ["arrays", "tf.data", "tf.data-spe4", "unknown-cardinality", "sequence", "generator"])
def test_every_data_handler_input_gives_exact_steps_samples_and_batch_loss(telemetry, kind: str) -> None:
    _instrument(telemetry)
    x, y = _staircase()
    model = KIT.frozen()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    if kind == "arrays":
        model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
    elif kind.startswith("tf.data"):
        if kind.endswith("spe4"):
            model.compile(optimizer=tf_keras.optimizers.SGD(0.0), loss="mse", steps_per_execution=4)
        model.fit(ds, epochs=2, verbose=0)
    elif kind == "unknown-cardinality":
        model.fit(ds.filter(lambda a, b: True), epochs=2, verbose=0)
    elif kind == "sequence":
        model.fit(_Batches(x, y), epochs=2, verbose=0, shuffle=False)
    else:
        model.fit((b for _ in range(2) for b in _Batches(x, y)), steps_per_epoch=7, epochs=2, verbose=0)
    assert _one(telemetry, sc.METRIC_TRAIN_STEPS) == 14
    assert _one(telemetry, sc.METRIC_TRAIN_SAMPLES) == 200
    # With steps_per_execution=4 the last execution holds batches 4-6 (y = 5, 6, 7; 16 + 16 + 4 samples).
    expected = (25 * 16 + 36 * 16 + 49 * 4) / 36 if kind.endswith("spe4") else 49.0
    assert _one(telemetry, sc.METRIC_TRAIN_LOSS) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    ("optimizer", "expected"),
    [
        (lambda: tf_keras.optimizers.Adam(1e-3), 1e-3),
        # Keras 2 reports the rate its last update used: the schedule at iteration 7 of 8.
        (lambda: tf_keras.optimizers.SGD(tf_keras.optimizers.schedules.ExponentialDecay(0.1, 4, 0.5)), 0.1 * 0.5**1.75),
        # Legacy optimizers hand back the schedule itself, evaluated at the current iteration.
        (
            lambda: tf_keras.optimizers.legacy.SGD(tf_keras.optimizers.schedules.ExponentialDecay(0.1, 4, 0.5)),
            0.1 * 0.5**2,
        ),
        (lambda: tf_keras.mixed_precision.LossScaleOptimizer(tf_keras.optimizers.SGD(0.02)), 0.02),
        (lambda: tf_keras.optimizers.legacy.RMSprop(0.03), 0.03),
    ],
    ids=["constant", "schedule", "legacy-schedule", "loss-scale", "legacy"],
)
def test_learning_rate_of_every_keras_2_optimizer_form(telemetry, optimizer, expected: float) -> None:
    _instrument(telemetry)
    model = KIT.sequential(optimizer=optimizer())
    model.fit(*km.data(samples=64), batch_size=16, epochs=2, verbose=0)
    (point,) = telemetry.points(sc.METRIC_TRAIN_LEARNING_RATE)
    assert point.value == pytest.approx(expected, rel=1e-6)
    assert point.attributes[sc.ML_OPTIMIZER_NAME] == "optimizer"
    assert point.attributes[sc.ML_FRAMEWORK] == sc.FRAMEWORK_TF_KERAS


def test_disabled_by_name_while_keras_3_stays_on(telemetry, monkeypatch) -> None:
    monkeypatch.setenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "tf_keras")
    _instrument(telemetry)
    assert not TfKerasInstrumentor().is_instrumented_by_opentelemetry
    KIT.sequential().fit(*km.data(samples=32), batch_size=16, verbose=0)
    assert telemetry.points(sc.METRIC_TRAIN_STEPS) == []
    km.sequential().fit(*km.data(samples=32), batch_size=16, verbose=0)
    assert _one(telemetry, sc.METRIC_TRAIN_STEPS) == 2


def test_an_unsupported_version_is_said_once_at_info(telemetry, monkeypatch, caplog) -> None:
    monkeypatch.setattr(TfKerasInstrumentor, "_instruments_any", ("tf-keras >= 99",))
    with caplog.at_level(logging.INFO, logger="otel_ml"):
        _instrument(telemetry)
        otel_ml.uninstrument()
        _instrument(telemetry)
    lines = [r for r in caplog.records if "not instrumented" in r.getMessage()]
    assert [(r.levelno, r.getMessage()) for r in lines] == [
        (
            logging.INFO,
            f"otel_ml: tf_keras {tf_keras.__version__} is imported but not instrumented: TfKerasInstrumentor "
            "supports tf-keras >= 99 (see 'Supported versions' in otel_ml's README)",
        )
    ]


def test_an_unsupported_version_stays_unpatched_when_the_check_is_skipped(telemetry, monkeypatch) -> None:
    """opentelemetry-instrument passes skip_dep_check=True: the instrumentor checks the version itself."""
    from tf_keras.src.engine import training

    monkeypatch.setattr(TfKerasInstrumentor, "_instruments_any", ("tf-keras >= 99",))
    original = training.Model.__dict__["fit"]
    TfKerasInstrumentor().instrument(meter_provider=telemetry.meter_provider, skip_dep_check=True)
    assert training.Model.__dict__["fit"] is original
    KIT.sequential().fit(*km.data(samples=32), batch_size=16, verbose=0)
    assert telemetry.points(sc.METRIC_TRAIN_STEPS) == []


_LEGACY_PROGRAM = textwrap.dedent(
    """
    import json, numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    import otel_ml
    reader, spans = InMemoryMetricReader(), InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    otel_ml.instrument(meter_provider=MeterProvider(metric_readers=[reader]), tracer_provider=tracer_provider)
    with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
        model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(1)], name="legacy")
        model.compile("sgd", "mse", steps_per_execution=4)
    x, y = np.ones((100, 4), "float32"), np.ones((100, 1), "float32")
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    points = {m.name: m.data.data_points[0] for rm in reader.get_metrics_data().resource_metrics
              for sm in rm.scope_metrics for m in sm.metrics}
    (fit,) = [s for s in spans.get_finished_spans() if s.name == "keras.fit"]
    print(json.dumps({"module": type(model).__module__, "steps": points["ml.train.steps"].value,
                      "samples": points["ml.train.samples"].value,
                      "framework": points["ml.train.steps"].attributes["ml.framework"],
                      "replicas": fit.attributes["ml.replica.count"]}))
    """
)


@pytest.mark.slow
def test_tf_keras_under_legacy_env_with_a_two_replica_strategy() -> None:
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "PYTHONPATH": os.getcwd()}
    done = subprocess.run(
        [sys.executable, "-c", _LEGACY_PROGRAM], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {
        "module": "tf_keras.src.engine.sequential",
        "steps": 14,
        "samples": 200,
        "framework": "tf_keras",
        "replicas": 2,
    }
