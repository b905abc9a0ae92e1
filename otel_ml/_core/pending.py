"""How the hot paths (Keras's per-step, Paddle's per-run) hand measurements to the SDK.

One SDK measurement costs several microseconds of attribute hashing, which a
training step or a small model's ``run()`` cannot afford every time. The fast,
common measurements are kept in plain lists and handed to the SDK in one tight
loop (:func:`drain`, through :func:`record_many_for`) at most every
:data:`FLUSH_NS` (and at every collection, epoch end, uninstrument and exit); a
scrape every second or more loses nothing by it. A measurement that belongs to
no span of ours is recorded in :data:`NO_EXEMPLAR`, buffered or not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.context import Context

NO_EXEMPLAR: Final = trace.set_span_in_context(trace.INVALID_SPAN)
"""Record in this context to leave no exemplar: the context of no span.

A measurement that belongs to no span of ours must not borrow the exemplar of
whatever span is current (a fit, an epoch, a Flask request). An empty
``Context()`` would not do: it is falsy, and the SDK then falls back to the
current context.
"""

FLUSH_NS: Final = 100_000_000
"""Pending measurements reach the SDK at least this often while steps or runs go on."""


def drain(
    values: list[Any],
    record: Callable[..., None],
    attrs: dict[str, Any],
    limit: int | None = None,
    many: Callable[[list[Any], dict[str, Any], Any], None] | None = None,
) -> bool:
    """Record and remove the oldest items of ``values`` (at most ``limit``); True when some are left.

    ``many(taken, attrs, context)``, when given, records them all at once
    (see :func:`record_many_for`) instead of ``record`` per item.

    Appends made meanwhile by other threads stay for next time: only the
    flusher, one at a time, removes from the front.

    Example:
        >>> seen = []
        >>> pending = [0.1, 0.2, 0.3]
        >>> drain(pending, lambda value, attrs, context: seen.append(value), {}, limit=2)
        True
        >>> seen, pending
        ([0.1, 0.2], [0.3])
    """
    count = len(values) if limit is None else min(len(values), limit)
    if count:
        taken = values[:count]
        del values[:count]
        if many is not None:
            many(taken, attrs, NO_EXEMPLAR)
        else:
            for value in taken:
                record(value, attrs, context=NO_EXEMPLAR)
    return len(values) > 0


RecordMany = Callable[[Sequence[float], dict[str, Any], Context], None]
"""``record_many(values, attrs, context)``: every value recorded with the same attributes."""

_accelerator: Callable[[Any], RecordMany | None] | None = None


def set_accelerator(factory: Callable[[Any], RecordMany | None] | None) -> None:
    """Let the distro layer hand batches to the SDK faster than one ``record`` per value.

    The instrumentation layer knows only the OpenTelemetry API, so the fast
    path (:mod:`otel_ml.distro._accelerate`, which knows the SDK's
    aggregations) is plugged in from above; ``factory(instrument)`` returns
    None for an instrument it does not know, and that instrument keeps the
    plain loop.
    """
    global _accelerator
    _accelerator = factory


def record_many_for(instrument: Any) -> RecordMany:
    """A ``record_many`` for a synchronous histogram or counter: the distro's fast path, else a loop.

    Example:
        >>> seen = []
        >>> class Histogram:
        ...     def record(self, value, attributes=None, context=None):
        ...         seen.append(value)
        >>> set_accelerator(None)
        >>> record_many_for(Histogram())([1.0, 2.0], {}, NO_EXEMPLAR)
        >>> seen
        [1.0, 2.0]
    """
    if _accelerator is not None:
        fast = _accelerator(instrument)
        if fast is not None:
            return fast
    record = getattr(instrument, "record", None) or instrument.add

    def record_many(values: Sequence[float], attrs: dict[str, Any], context: Context) -> None:
        for value in values:
            record(value, attrs, context=context)

    return record_many
