"""The Paddle instrumentor's options: one table, resolved once at instrument time."""

from __future__ import annotations

from dataclasses import dataclass

from otel_ml import environment_variables as ev
from otel_ml._core.options import Option, OptionTable, parse_float, parse_int, parse_str

OPTIONS = OptionTable(
    Option("model_name", ev.OTEL_ML_MODEL_NAME, parse_str, None),
    Option("model_version", ev.OTEL_ML_MODEL_VERSION, parse_str, None),
    Option("inference_warmup_runs", ev.OTEL_ML_INFERENCE_WARMUP_RUNS, parse_int(0, 1_000_000), 1),
    Option("slow_run_seconds", ev.OTEL_ML_SLOW_RUN_SECONDS, parse_float(0.0, above=True, maximum=86_400.0), None),
    Option("slow_run_factor", ev.OTEL_ML_SLOW_RUN_FACTOR, parse_float(1.0, above=True, maximum=1_000.0), 3.0),
)


@dataclass(frozen=True)
class PaddleOptions:
    """Resolved options (see :data:`OPTIONS` for each one's variable, bounds and default)."""

    model_name: str | None
    model_version: str | None
    inference_warmup_runs: int
    slow_run_seconds: float | None
    slow_run_factor: float
