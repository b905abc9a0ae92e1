"""The README documents every variable and every training metric, with its Prometheus name."""

from __future__ import annotations

import re
from pathlib import Path

from otel_ml import _semconv as sc
from otel_ml import environment_variables

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_every_otel_ml_variable_is_declared_with_a_docstring_and_in_the_readme() -> None:
    source = (ROOT / "otel_ml" / "environment_variables.py").read_text()
    names = [v for k, v in vars(environment_variables).items() if k.startswith("OTEL_ML_")]
    assert len(names) >= 7
    for name in names:
        assert re.search(rf'^{name}: Final = "{name}"\n"""\n\.\. envvar:: {name}\n', source, re.M), name
        assert f"`{name}`" in README, f"{name} is not in the README"


def test_every_training_metric_and_span_is_in_the_readme_with_its_prometheus_name() -> None:
    prometheus = {
        sc.METRIC_TRAIN_STEP_DURATION: "ml_train_step_duration_seconds",
        sc.METRIC_TRAIN_STEPS: "ml_train_steps_total",
        sc.METRIC_TRAIN_SAMPLES: "ml_train_samples_total",
        sc.METRIC_TRAIN_EPOCHS: "ml_train_epochs_total",
        sc.METRIC_TRAIN_EPOCH_DURATION: "ml_train_epoch_duration_seconds",
        sc.METRIC_TRAIN_LOSS: "ml_train_loss",
        sc.METRIC_TRAIN_METRIC: "ml_train_metric",
        sc.METRIC_TRAIN_LEARNING_RATE: "ml_train_learning_rate",
        sc.METRIC_TRAIN_ANOMALIES: "ml_train_anomalies_total",
    }
    for otel, prom in prometheus.items():
        row = next((line for line in README.splitlines() if line.startswith(f"| `{otel}` |")), None)
        assert row is not None and f"`{prom}" in row, f"{otel} -> {prom} missing from the README table"
    for span in (sc.SPAN_KERAS_FIT, sc.SPAN_KERAS_EPOCH, sc.SPAN_KERAS_TRAIN_STEP, sc.SPAN_KERAS_EVALUATE):
        assert f"`{span}`" in README
