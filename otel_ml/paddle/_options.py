"""The Paddle instrumentor's options, resolved once at instrument time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from otel_ml import environment_variables as ev
from otel_ml._config import parse_float, parse_int, parse_str, resolve

OPTION_NAMES = frozenset({"model_name", "inference_warmup_runs", "slow_run_seconds", "slow_run_factor"})


@dataclass(frozen=True)
class PaddleOptions:
    """Resolved options: argument, else ``OTEL_ML_*`` variable, else default."""

    model_name: str | None = None
    warmup_runs: int = 1
    slow_run_seconds: float | None = None
    slow_run_factor: float = 3.0

    @classmethod
    def resolve(cls, **kwargs: Any) -> PaddleOptions:
        """Build from ``instrument()`` keyword options; raises ``ValueError`` on a bad one."""
        return cls(
            model_name=resolve(kwargs.get("model_name"), ev.OTEL_ML_MODEL_NAME, parse_str, None, option="model_name"),
            warmup_runs=resolve(
                kwargs.get("inference_warmup_runs"),
                ev.OTEL_ML_INFERENCE_WARMUP_RUNS,
                parse_int(0),
                1,
                option="inference_warmup_runs",
            ),
            slow_run_seconds=resolve(
                kwargs.get("slow_run_seconds"),
                ev.OTEL_ML_SLOW_RUN_SECONDS,
                parse_float(0.0, above=True),
                None,
                option="slow_run_seconds",
            ),
            slow_run_factor=resolve(
                kwargs.get("slow_run_factor"),
                ev.OTEL_ML_SLOW_RUN_FACTOR,
                parse_float(1.0, above=True),
                3.0,
                option="slow_run_factor",
            ),
        )
