"""The tf.summary instrumentor's options: one table, resolved once at instrument time.

The tag cap and the run-name pattern are the rows the TensorBoard bridge
(``otel-ml tensorboard``) reads too; they are declared in :mod:`otel_ml._summary`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from otel_ml import environment_variables as ev
from otel_ml._core.options import Option, OptionTable, parse_bool, parse_float, parse_str
from otel_ml._summary import MAX_TAGS, RUN_NAME_PATTERN

OPTIONS = OptionTable(
    Option("summary_logdir_root", ev.OTEL_ML_TF_SUMMARY_LOGDIR_ROOT, parse_str, None),
    RUN_NAME_PATTERN,
    MAX_TAGS,
    Option("summary_flush_seconds", ev.OTEL_ML_TF_SUMMARY_FLUSH_SECONDS, parse_float(0.05, maximum=3600.0), 10.0),
    Option("summary_per_write", ev.OTEL_ML_TF_SUMMARY_PER_WRITE, parse_bool, False),
    Option("summary_graph_mode", ev.OTEL_ML_TF_SUMMARY_GRAPH_MODE, parse_bool, True),
)


@dataclass(frozen=True)
class SummaryOptions:
    """Resolved options (see :data:`OPTIONS` for each one's variable, bounds and default)."""

    summary_logdir_root: str | None
    summary_run_name_pattern: re.Pattern[str] | None
    summary_max_tags: int
    summary_flush_seconds: float
    summary_per_write: bool
    summary_graph_mode: bool
