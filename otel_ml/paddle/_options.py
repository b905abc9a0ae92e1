"""The Paddle instrumentor's options: one table, resolved once at instrument time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from otel_ml import environment_variables as ev
from otel_ml._core.options import Option, OptionTable, parse_float, parse_int, parse_str

OPTIONS = OptionTable(
    Option("model_name", ev.OTEL_ML_MODEL_NAME, parse_str, None, "ml.model.name of every predictor"),
    Option("model_version", ev.OTEL_ML_MODEL_VERSION, parse_str, None, "ml.model.version of every predictor"),
    Option(
        "inference_warmup_runs",
        ev.OTEL_ML_INFERENCE_WARMUP_RUNS,
        parse_int(0, 1_000_000),
        1,
        "first runs of each predictor marked ml.inference.warmup=true",
    ),
    Option(
        "slow_run_seconds",
        ev.OTEL_ML_SLOW_RUN_SECONDS,
        parse_float(0.0, above=True, maximum=86_400.0),
        None,
        "fixed slow-run threshold in seconds (unset: adaptive)",
    ),
    Option(
        "slow_run_factor",
        ev.OTEL_ML_SLOW_RUN_FACTOR,
        parse_float(1.0, above=True, maximum=1_000.0),
        3.0,
        "slow run: this many times the rolling median run time",
    ),
)


@dataclass(frozen=True)
class PaddleOptions:
    """Resolved options (see :data:`OPTIONS` for each one's variable, bounds and default)."""

    model_name: str | None
    model_version: str | None
    inference_warmup_runs: int
    slow_run_seconds: float | None
    slow_run_factor: float

    @classmethod
    def resolve(cls, arguments: dict[str, Any]) -> PaddleOptions:
        """Build from ``instrument()`` keyword options; raises ``ValueError`` on a bad one."""
        return cls(**OPTIONS.resolve(arguments))
