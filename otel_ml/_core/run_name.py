"""``otel_ml.run(name)``: name the run of the ``fit`` calls inside a ``with`` block.

A context variable, so it is per thread and per asyncio task, and it beats the
``run_name=`` option and ``OTEL_ML_RUN_NAME`` for the calls it encloses.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from otel_ml._core.text import valid_label

_RUN_NAME: contextvars.ContextVar[str | None] = contextvars.ContextVar("otel_ml_run_name", default=None)


@contextlib.contextmanager
def run(name: str) -> Iterator[None]:
    """Set ``ml.run.name`` for the training calls made inside the block.

    Args:
        name: The run name, e.g. ``"lr-0.01"``; a non-empty string. Bytes that are not UTF-8
            (``os.fsdecode`` of a latin-1 directory name) are kept as ``\\xNN`` escapes.

    Raises:
        ValueError: ``name`` is empty or not a string.

    Example:
        >>> import otel_ml
        >>> with otel_ml.run("lr-0.01"):
        ...     pass  # model.fit(...) here reports ml.run.name="lr-0.01"
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"otel_ml.run() needs a non-empty string name, got {name!r}")
    token = _RUN_NAME.set(valid_label(name))
    try:
        yield
    finally:
        _RUN_NAME.reset(token)


def current_run_name() -> str | None:
    """The name set by the innermost enclosing :func:`run`, if any."""
    return _RUN_NAME.get()
