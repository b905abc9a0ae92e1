"""The Keras instrumentor's options, resolved once at instrument time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from otel_ml import environment_variables as ev
from otel_ml._config import parse_float, parse_int, parse_str, resolve

OPTION_NAMES = frozenset(
    {
        "run_name",
        "slow_step_seconds",
        "slow_step_factor",
        "warmup_steps",
        "loss_spike_threshold",
        "loss_spike_window",
    }
)


@dataclass(frozen=True)
class KerasOptions:
    """Resolved options: argument, else ``OTEL_ML_*`` variable, else default."""

    run_name: str | None = None
    slow_step_seconds: float | None = None
    slow_step_factor: float = 3.0
    warmup_steps: int = 1
    loss_spike_threshold: float = 6.0
    loss_spike_window: int = 64

    @classmethod
    def resolve(cls, **kwargs: Any) -> KerasOptions:
        """Build from ``instrument()`` keyword options; raises ``ValueError`` on a bad one."""
        return cls(
            run_name=resolve(kwargs.get("run_name"), ev.OTEL_ML_RUN_NAME, parse_str, None, option="run_name"),
            slow_step_seconds=resolve(
                kwargs.get("slow_step_seconds"),
                ev.OTEL_ML_SLOW_STEP_SECONDS,
                parse_float(0.0, above=True),
                None,
                option="slow_step_seconds",
            ),
            slow_step_factor=resolve(
                kwargs.get("slow_step_factor"),
                ev.OTEL_ML_SLOW_STEP_FACTOR,
                parse_float(1.0, above=True),
                3.0,
                option="slow_step_factor",
            ),
            warmup_steps=resolve(
                kwargs.get("warmup_steps"), ev.OTEL_ML_WARMUP_STEPS, parse_int(0), 1, option="warmup_steps"
            ),
            loss_spike_threshold=resolve(
                kwargs.get("loss_spike_threshold"),
                ev.OTEL_ML_LOSS_SPIKE_THRESHOLD,
                parse_float(0.0, above=True),
                6.0,
                option="loss_spike_threshold",
            ),
            loss_spike_window=resolve(
                kwargs.get("loss_spike_window"),
                ev.OTEL_ML_LOSS_SPIKE_WINDOW,
                parse_int(8),
                64,
                option="loss_spike_window",
            ),
        )
