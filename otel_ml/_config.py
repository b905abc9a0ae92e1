"""Reading options: an explicit argument beats the environment, which beats the default.

Bad explicit arguments raise ``ValueError`` (a programming error the caller
can fix at once). Bad environment values are logged once, naming the variable
and what it accepts, and the default is used: deployment typos must not kill
a training job that would otherwise run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TypeVar

_LOG = logging.getLogger(__name__)
T = TypeVar("T")

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class _Invalid(ValueError):
    """A value outside what a parser accepts; its message says what is accepted."""


def parse_float(minimum: float | None = None, *, above: bool = False) -> Callable[[object], float]:
    """Return a parser for a number, optionally bounded below (``above``: strictly)."""

    def parse(value: object) -> float:
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise _Invalid(_bound_text("a number", minimum, above)) from None
        if number != number or number in (float("inf"), float("-inf")):
            raise _Invalid(_bound_text("a finite number", minimum, above))
        if minimum is not None and (number <= minimum if above else number < minimum):
            raise _Invalid(_bound_text("a number", minimum, above))
        return number

    return parse


def parse_int(minimum: int | None = None) -> Callable[[object], int]:
    """Return a parser for a whole number, optionally bounded below."""

    def parse(value: object) -> int:
        if isinstance(value, bool):
            raise _Invalid(_bound_text("a whole number", minimum, False))
        try:
            number = int(str(value).strip()) if isinstance(value, str) else int(value)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            raise _Invalid(_bound_text("a whole number", minimum, False)) from None
        if isinstance(value, float) and value != number:
            raise _Invalid(_bound_text("a whole number", minimum, False))
        if minimum is not None and number < minimum:
            raise _Invalid(_bound_text("a whole number", minimum, False))
        return number

    return parse


def parse_bool(value: object) -> bool:
    """Parse ``true/false/1/0/yes/no/on/off`` (any case) or a real bool."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _Invalid("true or false (also 1/0, yes/no, on/off)")


def parse_str(value: object) -> str:
    """Accept any non-empty string."""
    text = str(value).strip()
    if not text:
        raise _Invalid("a non-empty string")
    return text


def parse_choice(*choices: str) -> Callable[[object], str]:
    """Return a parser that accepts one of ``choices`` (case-insensitive)."""

    def parse(value: object) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise _Invalid("one of " + ", ".join(choices))
        return text

    return parse


def resolve(
    argument: object | None,
    env_var: str,
    parser: Callable[[object], T],
    default: T,
    *,
    option: str | None = None,
) -> T:
    """Resolve one option: argument, else environment variable, else default.

    Args:
        argument: The explicit value, or None when the caller gave none.
        env_var: The ``OTEL_ML_*`` variable to read when no argument was given.
        parser: Validates and converts the raw value.
        default: Used when neither is set, or the environment value is bad.
        option: The keyword name, for the error message of a bad argument.

    Raises:
        ValueError: the explicit argument is invalid.

    Example:
        >>> resolve(None, "OTEL_ML_WARMUP_STEPS", parse_int(0), 1)
        1
    """
    if argument is not None:
        try:
            return parser(argument)
        except _Invalid as exc:
            raise ValueError(f"{option or env_var}={argument!r} is invalid: expected {exc}") from None
    raw = os.environ.get(env_var)
    if raw is None or raw.strip() == "":
        return default
    try:
        return parser(raw)
    except _Invalid as exc:
        _LOG.error("%s=%r is invalid: expected %s; using the default %r", env_var, raw, exc, default)
        return default


def _bound_text(kind: str, minimum: float | None, above: bool) -> str:
    if minimum is None:
        return kind
    return f"{kind} {'>' if above else '>='} {minimum:g}"
