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

import weakref
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.context import Context

from otel_ml._core.guard import report

NO_EXEMPLAR: Final = trace.set_span_in_context(trace.INVALID_SPAN, Context())  # that key alone, whatever is current
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

Accelerator = Callable[[Any], "RecordMany | None"]
"""``factory(instrument)``: a faster ``record_many`` for that instrument, or None for one it does not know."""

ACCELERATOR_GROUP: Final = "otel_ml_accelerator"
"""The entry-point group a fast path registers under (otel_ml's own: the distro's, for the SDK's instruments)."""

_UNSET: Final[Any] = object()
_accelerator: Any = _UNSET  # an Accelerator, None (the plain loop), or not looked up yet


def set_accelerator(factory: Accelerator | None) -> None:
    """Plug in a faster hand-over of batches than one ``record`` per value (None: the plain loop).

    The instrumentation layer knows only the OpenTelemetry API, so the fast
    path (:mod:`otel_ml.distro._accelerate`, which knows the SDK's
    aggregations) is plugged in from above: by the distro when it is imported,
    or found through the :data:`ACCELERATOR_GROUP` entry points the first time
    an instrumentor asks, so that instrumentors used on their own with an SDK
    provider get it too, and under another SDK every instrument keeps the loop.
    """
    global _accelerator
    _accelerator = factory


def _discovered() -> Accelerator | None:
    """The first :data:`ACCELERATOR_GROUP` entry point that loads, looked up once."""
    global _accelerator
    if _accelerator is _UNSET:
        found = None
        for entry_point in entry_points(group=ACCELERATOR_GROUP):
            try:
                found = entry_point.load()
                break
            except Exception as exc:  # noqa: BLE001 - without it, the plain loop gives the same figures
                report(f"loading the {entry_point.name} accelerator", exc)
        _accelerator = found
    return _accelerator  # type: ignore[no-any-return]


def record_many_for(instrument: Any) -> RecordMany:
    """A ``record_many`` for a synchronous histogram or counter: a plugged-in fast path, else a loop.

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
    accelerator = _discovered()
    if accelerator is not None:
        fast = accelerator(instrument)
        if fast is not None:
            return fast
    record = getattr(instrument, "record", None) or instrument.add

    def record_many(values: Sequence[float], attrs: dict[str, Any], context: Context) -> None:
        for value in values:
            record(value, attrs, context=context)

    return record_many


# --- hand-over on demand (SIGTERM) ---------------------------------------------------------

_on_demand: weakref.WeakSet[Any] = weakref.WeakSet()


def hand_over_on_demand(owner: Any) -> None:
    """Register ``owner`` (weakly): :func:`hand_over_now` calls its ``hand_over()``.

    For what is buffered between flushes in the program's own thread (a fit's
    steps): a SIGTERM that ends the process must not lose it.
    """
    _on_demand.add(owner)


def hand_over_now() -> None:
    """Hand every registered owner's pending measurements to the SDK (before a last export)."""
    for owner in list(_on_demand):
        try:
            owner.hand_over()
        except Exception as exc:  # noqa: BLE001 - one owner's failure must not stop the others
            report("handing pending measurements over", exc)
