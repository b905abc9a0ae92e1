"""The option rows both summary paths read: the tag cap and the run-name pattern.

The tf.summary instrumentor puts them in its options table; the bridge
(``otel-ml tensorboard``) resolves its ``--max-tags`` and
``--run-name-pattern`` with the same rows, so both accept the same values.
"""

from __future__ import annotations

import re

from otel_ml import environment_variables as ev
from otel_ml._core.options import _MAX_TEXT, Option, Parser, _Invalid, parse_int, parse_str


def _to_pattern(value: object) -> re.Pattern[str]:
    if isinstance(value, re.Pattern):
        return value
    try:
        text = parse_str(value)
    except ValueError:
        raise ValueError(value) from None  # said as the pattern's own "accepts"
    try:
        return re.compile(text)
    except re.error as exc:
        raise _Invalid(f"a Python regular expression ({exc})") from None


parse_pattern = Parser(f"a Python regular expression (at most {_MAX_TEXT} characters)", _to_pattern)
"""Accept a compiled pattern or a text that compiles as a Python regular expression."""

RUN_NAME_PATTERN: Option[re.Pattern[str] | None] = Option(
    "summary_run_name_pattern", ev.OTEL_ML_TF_SUMMARY_RUN_NAME_PATTERN, parse_pattern, None
)
MAX_TAGS = Option("summary_max_tags", ev.OTEL_ML_TF_SUMMARY_MAX_TAGS, parse_int(1, 100_000), 100)
