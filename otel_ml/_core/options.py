"""Options: each declared once as an :class:`Option`, and the one resolver they share.

An :class:`Option` holds every fact about one option but its prose: the
keyword of ``otel_ml.instrument()``, the ``OTEL_ML_*`` variable (a constant of
:mod:`otel_ml.environment_variables`, whose docstring is the prose), the
parser with its bounds and the default. Each instrumentor's options module
groups its options in one :class:`OptionTable`; ``docs/configuration.md`` is
generated from the same declarations (``scripts/configuration_doc.py``).

An explicit argument beats the environment, which beats the default. Bad
explicit arguments raise ``ValueError`` (a programming error the caller can
fix at once). Bad environment values are logged once, naming the variable and
what it accepts, and the default is used: a deployment typo must not kill a
training job that would otherwise run. Every parser is bounded, because a
value that parses can still be absurd (a spike window of 10^9 would make each
step cost milliseconds).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from otel_ml._core.text import valid_label

_LOG = logging.getLogger(__name__)
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_MAX_TEXT = 1_000
"""Longest option text accepted (a text option may become a label value)."""
_MAX_DIGITS = 30
"""Longest whole-number text accepted: caps the work ``int()`` does on a hostile digit string."""


_reported: set[tuple[str, str]] = set()
"""(variable, bad value) pairs already logged; cleared by :func:`forget_reported`."""


def forget_reported() -> None:
    """Log bad environment values again (after ``otel_ml.uninstrument()``: the next instrument is a new start)."""
    _reported.clear()


class _Invalid(ValueError):
    """A value outside what a parser accepts; its message says what is accepted."""


@dataclass(frozen=True)
class Parser(Generic[T_co]):
    """Validates and converts a raw option value; ``accepts`` says, for people, what it takes.

    ``accepts`` is the text of every error message about a bad value and of
    the "accepted" column of ``docs/configuration.md``: one text, so the
    message and the reference cannot disagree.

    Example:
        >>> parse_int(0, 10).accepts
        'a whole number >= 0 and <= 10'
    """

    accepts: str
    convert: Callable[[object], T_co]
    """Returns the value, or raises (any exception means "not accepted")."""

    def __call__(self, value: object) -> T_co:
        """The converted value; raises ``_Invalid`` (a ``ValueError``) saying what is accepted."""
        try:
            return self.convert(value)
        except _Invalid:
            raise
        except Exception:  # noqa: BLE001 - any failure to convert is "not accepted"
            raise _Invalid(self.accepts) from None


def parse_float(minimum: float | None = None, *, above: bool = False, maximum: float | None = None) -> Parser[float]:
    """Return a parser for a finite number within bounds (``above``: strictly above ``minimum``).

    Example:
        >>> parse_float(1.0, above=True, maximum=100.0)("3")
        3.0
        >>> parse_float(1.0, above=True, maximum=100.0).accepts
        'a number > 1 and <= 100'
    """

    def convert(value: object) -> float:
        if isinstance(value, bool) or (isinstance(value, str) and len(value) > _MAX_TEXT):
            raise ValueError(value)
        number = float(value)  # type: ignore[arg-type]
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError(value)
        if minimum is not None and (number <= minimum if above else number < minimum):
            raise ValueError(value)
        if maximum is not None and number > maximum:
            raise ValueError(value)
        return number

    return Parser(_bound_text("a number", minimum, above, maximum), convert)


def parse_int(minimum: int | None = None, maximum: int | None = None) -> Parser[int]:
    """Return a parser for a whole number within bounds.

    Example:
        >>> parse_int(0, 10)(" 7 ")
        7
    """

    def convert(value: object) -> int:
        if isinstance(value, bool) or (isinstance(value, str) and len(value.strip()) > _MAX_DIGITS):
            raise ValueError(value)
        number = int(value.strip()) if isinstance(value, str) else int(value)  # type: ignore[call-overload]
        if isinstance(value, float) and value != number:
            raise ValueError(value)
        if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
            raise ValueError(value)
        return number

    return Parser(_bound_text("a whole number", minimum, False, maximum), convert)


def _to_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(value)


parse_bool = Parser("true or false (also 1/0, yes/no, on/off)", _to_bool)
"""Parse ``true/false/1/0/yes/no/on/off`` (any case) or a real bool."""


def parse_choice(*choices: str) -> Parser[str]:
    """Return a parser for one of ``choices`` (any case, surrounding spaces ignored).

    Example:
        >>> parse_choice("gzip", "none")(" GZIP ")
        'gzip'
    """
    accepted = {choice.lower(): choice for choice in choices}
    return Parser("one of " + ", ".join(sorted(accepted.values())), lambda value: accepted[str(value).strip().lower()])


def _to_str(value: object) -> str:
    text = str(value).strip()
    if not text or len(text) > _MAX_TEXT:
        raise ValueError(value)
    return valid_label(text)  # an environment value may hold bytes that are not UTF-8


parse_str = Parser(f"a non-empty string of at most {_MAX_TEXT} characters", _to_str)
"""Accept a non-empty string of at most 1,000 characters (it may become a label value: made valid UTF-8)."""


@dataclass(frozen=True)
class Option(Generic[T]):
    """One option, declared once: everything else (tables, messages, the reference page) reads it.

    Attributes:
        name: The keyword of ``otel_ml.instrument()`` when the option is in an
            instrumentor's table, else the argument it stands for (or a name for messages).
        variable: The environment variable read when no argument is given: a constant of
            :mod:`otel_ml.environment_variables`, whose docstring is the option's documentation.
        parse: Validates and converts a raw value; its ``accepts`` says what it takes.
        default: Used when neither is set, or the environment value is bad; ``None``: unset,
            with a meaning the variable's docstring gives.
    """

    name: str
    variable: str
    parse: Parser[T]
    default: T

    def resolve(self, argument: object | None, label: str | None = None) -> T:
        """Argument, else the variable, else the default.

        Raises:
            ValueError: the argument is invalid; the message names it (as ``label``, e.g. a
                command-line flag, else the option's name) and what is accepted.
        """
        if argument is not None:
            try:
                return self.parse(argument)
            except _Invalid as exc:
                raise ValueError(f"{label or self.name}={argument!r} is invalid: expected {exc}") from None
        return env_value(self.variable, self.parse, self.default)


PARSED: Final = "otel_ml_parsed_options"
"""The keyword under which ``otel_ml.instrument()`` hands an instrumentor its parsed explicit options."""


class OptionTable:
    """An instrumentor's options: the keywords it takes from ``otel_ml.instrument()``.

    Example:
        >>> table = OptionTable(Option("warmup_steps", "OTEL_ML_WARMUP_STEPS", parse_int(0, 10), 1))
        >>> table.resolve({})
        {'warmup_steps': 1}
        >>> table.resolve({"warmup_steps": 3})
        {'warmup_steps': 3}
    """

    def __init__(self, *options: Option[Any]) -> None:
        self._options = options
        self.names = frozenset(option.name for option in options)

    def __iter__(self) -> Iterator[Option[Any]]:
        return iter(self._options)

    def parse(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The explicit arguments of this table, parsed (the environment is not read).

        ``otel_ml.instrument()`` parses every explicit argument once, before it
        turns anything on, so that a bad one raises with nothing half-done; the
        instrumentors then receive the parsed values under :data:`PARSED`.

        Raises:
            ValueError: an explicit argument is invalid; the message names it and what is accepted.
        """
        return {
            option.name: option.resolve(arguments[option.name])
            for option in self._options
            if arguments.get(option.name) is not None
        }

    def resolve(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Resolve every option of the table from ``arguments`` (other keys are ignored).

        Values already parsed by :meth:`parse`, passed under :data:`PARSED`, are
        taken as they are; the rest come from their arguments, else the
        environment, else the default.

        Raises:
            ValueError: an explicit argument is invalid; the message names it and what is accepted.
        """
        parsed: Mapping[str, Any] = arguments.get(PARSED) or {}
        return {
            option.name: parsed[option.name] if option.name in parsed else option.resolve(arguments.get(option.name))
            for option in self._options
        }


def env_value(variable: str, parse: Callable[[object], T], default: T, default_text: str | None = None) -> T:
    """The parsed value of ``variable``, or ``default`` when unset, empty or bad (logged once).

    ``default_text`` describes the default in the log line when its ``repr`` would not.

    Example:
        >>> env_value("OTEL_ML_NOT_SET_ANYWHERE", parse_int(0), 5)
        5
    """
    raw = os.environ.get(variable)
    if raw is None or raw.strip() == "":
        return default
    try:
        return parse(raw)
    except Exception as exc:  # noqa: BLE001 - a bad environment value must never stop the program
        if (variable, raw) in _reported:
            return default  # instrumentors sharing a variable (keras, tf_keras) report it once
        _reported.add((variable, raw))
        shown = raw if len(raw) <= 80 else raw[:77] + "..."
        expected = exc if isinstance(exc, _Invalid) else f"a valid value ({type(exc).__name__}: {exc})"
        shown_default = default_text if default_text is not None else repr(default)
        _LOG.error("%s=%r is invalid: expected %s; using the default %s", variable, shown, expected, shown_default)
        return default


def _bound_text(kind: str, minimum: float | None, above: bool, maximum: float | None) -> str:
    parts = [kind]
    if minimum is not None:
        parts.append(f"{'>' if above else '>='} {_number(minimum)}")
    if maximum is not None:
        parts.append(f"<= {_number(maximum)}")
    return " and ".join(parts).replace(" and ", " ", 1)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
