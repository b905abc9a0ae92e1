"""Keep otel_ml's own failures out of the user's program.

Every hook otel_ml runs inside a training loop or an inference call goes
through :func:`guarded`. A failure is logged once per (site, exception type)
at WARNING with its traceback, then counted silently: a bug of ours must
neither stop training nor flood its log.

The test suite watches every report through :func:`recording` (its test
mode, as MLflow's ``safe_patch`` re-raises under test): a swallowed error
would otherwise pass unnoticed wherever a test does not look at the log.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

_LOG = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

_seen: dict[tuple[str, type[BaseException]], int] = {}
_lock = threading.Lock()
_recorders: list[list[tuple[str, BaseException]]] = []


def report(site: str, exc: BaseException) -> None:
    """Log ``exc`` raised inside otel_ml at ``site``, once per site and type."""
    key = (site, type(exc))
    with _lock:
        count = _seen.get(key, 0)
        _seen[key] = count + 1
        for recorder in _recorders:
            recorder.append((site, exc))
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


@contextmanager
def recording() -> Iterator[list[tuple[str, BaseException]]]:
    """Collect every ``(site, exception)`` reported, from any thread, while the block runs.

    The seam of the test suite's test mode (``tests/conftest.py``): logging
    once and carrying on is right for a user, but a test must fail when the
    code it drives hit a bug of ours.

    Example:
        >>> with recording() as errors:
        ...     report("demo", RuntimeError("bug"))  # logged once, and recorded
        >>> [(site, type(exc).__name__) for site, exc in errors]
        [('demo', 'RuntimeError')]
    """
    recorder: list[tuple[str, BaseException]] = []
    with _lock:
        _recorders.append(recorder)
    try:
        yield recorder
    finally:
        with _lock:
            _recorders.remove(recorder)


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
