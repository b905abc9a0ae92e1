"""The README documents every variable and every training metric, with its Prometheus name."""

from __future__ import annotations

import re
from pathlib import Path

from otel_ml import environment_variables
from otel_ml._core import semconv as sc

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


def _option_tables() -> list[tuple[str, object]]:
    from otel_ml.distro._instrument import entry_points

    return [(ep.name, ep.load().option_table) for ep in entry_points()]


def _readme_row(variable: str) -> list[str]:
    # The variable table has four columns: variable, option, default, meaning.
    rows = [
        cells
        for ln in README.splitlines()
        if ln.startswith(f"| `{variable}` |")
        and len(cells := [c.strip() for c in ln.strip().strip("|").split("|")]) == 4
    ]
    assert len(rows) == 1, f"{variable} needs exactly one row in the README's variable table"
    return rows[0]


def _shown(default: object) -> str:
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, float) and default.is_integer():
        return f"`{int(default)}`"
    return f"`{default}`"


def test_every_option_table_row_is_in_the_variable_table_with_its_keyword_and_default() -> None:
    declared = {v for k, v in vars(environment_variables).items() if k.startswith("OTEL_ML_")}
    rows = 0
    for _name, table in _option_tables():
        for option in table:  # type: ignore[attr-defined]
            assert option.variable in declared, f"{option.variable} is not declared in environment_variables.py"
            _, keyword_cell, default_cell, _ = _readme_row(option.variable)
            assert keyword_cell == f"`{option.name}`", option.variable
            if option.default is not None:
                assert default_cell == _shown(option.default), (option.variable, default_cell)
            rows += 1
    assert rows >= 14
