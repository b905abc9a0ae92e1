"""The option rows both summary paths read: the tag cap and the run-name pattern.

The tf.summary instrumentor puts them in its options table; the bridge
(``otel-ml tensorboard``) resolves its ``--max-tags`` and
``--run-name-pattern`` with the same rows, so both accept the same values.
"""

from __future__ import annotations

import re

from otel_ml import environment_variables as ev
from otel_ml._core.options import Option, _Invalid, parse_int, parse_str


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
