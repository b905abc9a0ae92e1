"""The training options: one table, shared by the Keras 3 and Keras 2 (``tf_keras``) instrumentors.

Both instrumentors read the same ``OTEL_ML_*`` variables, so that one
setting applies to whichever Keras the program trains with; both name this
very table as their ``option_table``.
"""

from __future__ import annotations

from dataclasses import dataclass

from otel_ml import environment_variables as ev
from otel_ml._core.cardinality import DEFAULT_LIMIT
from otel_ml._core.options import Option, OptionTable, parse_float, parse_int, parse_str

OPTIONS = OptionTable(
    Option("run_name", ev.OTEL_ML_RUN_NAME, parse_str, None),
    Option("slow_step_seconds", ev.OTEL_ML_SLOW_STEP_SECONDS, parse_float(0.0, above=True, maximum=86_400.0), None),
    Option("slow_step_factor", ev.OTEL_ML_SLOW_STEP_FACTOR, parse_float(1.0, above=True, maximum=1_000.0), 3.0),
    Option("warmup_steps", ev.OTEL_ML_WARMUP_STEPS, parse_int(0, 1_000_000), 1),
    Option("loss_spike_threshold", ev.OTEL_ML_LOSS_SPIKE_THRESHOLD, parse_float(0.0, above=True, maximum=1e6), 6.0),
    Option("loss_spike_window", ev.OTEL_ML_LOSS_SPIKE_WINDOW, parse_int(8, 4_096), 64),
    Option("max_runs", ev.OTEL_ML_MAX_RUNS, parse_int(1, 100_000), DEFAULT_LIMIT),
)


@dataclass(frozen=True)
class TrainingOptions:
    """Resolved options (see :data:`OPTIONS` for each one's variable, bounds and default)."""

    run_name: str | None
    slow_step_seconds: float | None
    slow_step_factor: float
    warmup_steps: int
    loss_spike_threshold: float
    loss_spike_window: int
    max_runs: int
