"""The training instrumentors' options: one set of rows, shared by Keras 3 and Keras 2 (``tf_keras``).

Both instrumentors read the same ``OTEL_ML_*`` variables, so that one
setting applies to whichever Keras the program trains with; each builds its
own :class:`~otel_ml._core.options.OptionTable` from :data:`TRAINING_OPTIONS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from otel_ml import environment_variables as ev
from otel_ml._core.options import Option, OptionTable, parse_float, parse_int, parse_str

TRAINING_OPTIONS = (
    Option("run_name", ev.OTEL_ML_RUN_NAME, parse_str, None, "ml.run.name of the training series"),
    Option(
        "slow_step_seconds",
        ev.OTEL_ML_SLOW_STEP_SECONDS,
        parse_float(0.0, above=True, maximum=86_400.0),
        None,
        "fixed slow-step threshold in seconds (unset: adaptive)",
    ),
    Option(
        "slow_step_factor",
        ev.OTEL_ML_SLOW_STEP_FACTOR,
        parse_float(1.0, above=True, maximum=1_000.0),
        3.0,
        "slow step: this many times the rolling median step time",
    ),
    Option(
        "warmup_steps",
        ev.OTEL_ML_WARMUP_STEPS,
        parse_int(0, 1_000_000),
        1,
        "executions per fit kept out of the slow-step baseline",
    ),
    Option(
        "loss_spike_threshold",
        ev.OTEL_ML_LOSS_SPIKE_THRESHOLD,
        parse_float(0.0, above=True, maximum=1e6),
        6.0,
        "robust z-score of log(loss) above which a batch loss that doubled is a spike",
    ),
    Option(
        "loss_spike_window",
        ev.OTEL_ML_LOSS_SPIKE_WINDOW,
        parse_int(8, 4_096),
        64,
        "batch losses in the spike detector's baseline",
    ),
)
_TABLE = OptionTable(*TRAINING_OPTIONS)


@dataclass(frozen=True)
class TrainingOptions:
    """Resolved options (see :data:`TRAINING_OPTIONS` for each one's variable, bounds and default)."""

    run_name: str | None
    slow_step_seconds: float | None
    slow_step_factor: float
    warmup_steps: int
    loss_spike_threshold: float
    loss_spike_window: int

    @classmethod
    def resolve(cls, arguments: dict[str, Any]) -> TrainingOptions:
        """Build from ``instrument()`` keyword options; raises ``ValueError`` on a bad one."""
        return cls(**_TABLE.resolve(arguments))
