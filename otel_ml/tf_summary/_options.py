"""The tf.summary instrumentor's options: one table, resolved once at instrument time.

The TensorBoard bridge (``otel-ml tensorboard``) reads the tag cap and the
run-name pattern from the same rows, so both paths accept the same values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from otel_ml import environment_variables as ev
from otel_ml._config import Option, OptionTable, _Invalid, parse_bool, parse_int, parse_str


def parse_pattern(value: object) -> re.Pattern[str]:
    """Accept a compiled pattern or a string that compiles as a Python regular expression.

    Example:
        >>> parse_pattern(r"runs/(\\w+)").pattern
        'runs/(\\\\w+)'
    """
    if isinstance(value, re.Pattern):
        return value
    text = parse_str(value)
    try:
        return re.compile(text)
    except re.error as exc:
        raise _Invalid(f"a Python regular expression ({exc})") from None


LOGDIR_ROOT = Option(
    "summary_logdir_root",
    ev.OTEL_ML_TF_SUMMARY_LOGDIR_ROOT,
    parse_str,
    None,
    "run names are logdirs relative to this directory",
)
RUN_NAME_PATTERN = Option(
    "summary_run_name_pattern",
    ev.OTEL_ML_TF_SUMMARY_RUN_NAME_PATTERN,
    parse_pattern,
    None,
    "regular expression whose first group (or whole match) names the run",
)
MAX_TAGS = Option(
    "summary_max_tags",
    ev.OTEL_ML_TF_SUMMARY_MAX_TAGS,
    parse_int(1, 100_000),
    100,
    "distinct tags exported per run; later tags are counted as dropped",
)
GRAPH_MODE = Option(
    "summary_graph_mode",
    ev.OTEL_ML_TF_SUMMARY_GRAPH_MODE,
    parse_bool,
    True,
    "mirror writes made inside tf.function",
)
OPTIONS = OptionTable(LOGDIR_ROOT, RUN_NAME_PATTERN, MAX_TAGS, GRAPH_MODE)


@dataclass(frozen=True)
class SummaryOptions:
    """Resolved options (see :data:`OPTIONS` for each one's variable, bounds and default)."""

    summary_logdir_root: str | None
    summary_run_name_pattern: re.Pattern[str] | None
    summary_max_tags: int
    summary_graph_mode: bool

    @classmethod
    def resolve(cls, arguments: dict[str, Any]) -> SummaryOptions:
        """Build from ``instrument()`` keyword options; raises ``ValueError`` on a bad one."""
        return cls(**OPTIONS.resolve(arguments))
