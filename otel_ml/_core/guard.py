"""Keep otel_ml's own failures out of the user's program.

Every hook otel_ml runs inside a training loop or an inference call goes
through :func:`guarded`. A failure is logged once per (site, exception type)
at WARNING with its traceback, then counted silently: a bug of ours must
neither stop training nor flood its log.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

_LOG = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

_seen: dict[tuple[str, type[BaseException]], int] = {}
_lock = threading.Lock()


def report(site: str, exc: BaseException) -> None:
    """Log ``exc`` raised inside otel_ml at ``site``, once per site and type."""
    key = (site, type(exc))
    with _lock:
        count = _seen.get(key, 0)
        _seen[key] = count + 1
    if count == 0:
        _LOG.warning(
            "otel_ml: internal error in %s (%s: %s); the program continues, telemetry from this "
            "point may be incomplete. Further errors of this kind are not logged.",
            site,
            type(exc).__name__,
            exc,
            exc_info=exc,
        )


def error_counts() -> dict[tuple[str, type[BaseException]], int]:
    """A copy of the internal-error counts, for tests and diagnostics."""
    with _lock:
        return dict(_seen)


def guarded(site: str, default: Any = None) -> Callable[[F], F]:
    """Decorate a telemetry hook so that its exceptions are reported, never raised.

    Args:
        site: A short name for the log line, e.g. ``"keras.on_train_batch_end"``.
        default: What the hook returns when it failed.

    Example:
        >>> @guarded("demo")
        ... def hook() -> None:
        ...     raise RuntimeError("bug")
        >>> hook()  # logs once, returns None
    """

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - the point of the guard
                report(site, exc)
                return default

        return wrapper  # type: ignore[return-value]

    return decorate
