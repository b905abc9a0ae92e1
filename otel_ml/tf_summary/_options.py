"""The tf.summary instrumentor's options: one table, resolved once at instrument time.

The tag cap and the run-name pattern are the rows the TensorBoard bridge
(``otel-ml tensorboard``) reads too; they live in :mod:`otel_ml._summary`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from otel_ml import environment_variables as ev
from otel_ml._core.options import Option, OptionTable, parse_bool, parse_float, parse_str
from otel_ml._summary import MAX_TAGS, RUN_NAME_PATTERN

LOGDIR_ROOT = Option(
    "summary_logdir_root",
    ev.OTEL_ML_TF_SUMMARY_LOGDIR_ROOT,
    parse_str,
    None,
    "run names are logdirs relative to this directory",
)
FLUSH_SECONDS = Option(
    "summary_flush_seconds",
    ev.OTEL_ML_TF_SUMMARY_FLUSH_SECONDS,
    parse_float(0.05, maximum=3600.0),
    10.0,
    "flush_millis (in seconds) given to writers created without one; bounds the export latency",
)
PER_WRITE = Option(
    "summary_per_write",
    ev.OTEL_ML_TF_SUMMARY_PER_WRITE,
    parse_bool,
    False,
    "export each write as it is made (costs every write) instead of reading the event files back",
)
GRAPH_MODE = Option(
    "summary_graph_mode",
    ev.OTEL_ML_TF_SUMMARY_GRAPH_MODE,
    parse_bool,
    True,
    "with summary_per_write: mirror writes made inside tf.function",
)
OPTIONS = OptionTable(LOGDIR_ROOT, RUN_NAME_PATTERN, MAX_TAGS, FLUSH_SECONDS, PER_WRITE, GRAPH_MODE)


@dataclass(frozen=True)
class SummaryOptions:
    """Resolved options (see :data:`OPTIONS` for each one's variable, bounds and default)."""

    summary_logdir_root: str | None
    summary_run_name_pattern: re.Pattern[str] | None
    summary_max_tags: int
    summary_flush_seconds: float
    summary_per_write: bool
    summary_graph_mode: bool

    @classmethod
    def resolve(cls, arguments: dict[str, Any]) -> SummaryOptions:
        """Build from ``instrument()`` keyword options; raises ``ValueError`` on a bad one."""
        return cls(**OPTIONS.resolve(arguments))
