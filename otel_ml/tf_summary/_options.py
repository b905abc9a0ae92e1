"""The tf.summary instrumentor's options: argument, else ``OTEL_ML_*`` variable, else default."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from otel_ml import environment_variables as ev
from otel_ml._config import _Invalid, parse_bool, parse_int, parse_str, resolve

DEFAULT_MAX_TAGS: Final = 100
OPTION_NAMES: Final = frozenset(
    {"summary_logdir_root", "summary_run_name_pattern", "summary_max_tags", "summary_graph_mode"}
)


def parse_pattern(value: object) -> re.Pattern[str]:
    """Accept a compiled pattern or a string that compiles as a Python regular expression."""
    if isinstance(value, re.Pattern):
        return value
    text = str(value)
    try:
        return re.compile(text)
    except re.error as exc:
        raise _Invalid(f"a Python regular expression ({exc})") from None


@dataclass(frozen=True)
class SummaryOptions:
    """Resolved options; see :mod:`otel_ml.environment_variables` for each one."""

    logdir_root: str | None
    run_name_pattern: re.Pattern[str] | None
    max_tags: int
    graph_mode: bool

    @classmethod
    def resolve(
        cls,
        summary_logdir_root: object = None,
        summary_run_name_pattern: object = None,
        summary_max_tags: object = None,
        summary_graph_mode: object = None,
    ) -> SummaryOptions:
        """Resolve every option; an invalid explicit argument raises ``ValueError``."""
        return cls(
            logdir_root=resolve(
                summary_logdir_root,
                ev.OTEL_ML_TF_SUMMARY_LOGDIR_ROOT,
                parse_str,
                None,
                option="summary_logdir_root",
            ),
            run_name_pattern=resolve(
                summary_run_name_pattern,
                ev.OTEL_ML_TF_SUMMARY_RUN_NAME_PATTERN,
                parse_pattern,
                None,
                option="summary_run_name_pattern",
            ),
            max_tags=resolve(
                summary_max_tags, ev.OTEL_ML_TF_SUMMARY_MAX_TAGS, parse_int(1), DEFAULT_MAX_TAGS,
                option="summary_max_tags",
            ),
            graph_mode=resolve(
                summary_graph_mode, ev.OTEL_ML_TF_SUMMARY_GRAPH_MODE, parse_bool, True, option="summary_graph_mode"
            ),
        )
