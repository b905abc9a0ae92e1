"""Hand many values with the same attributes to the SDK at the cost of one measurement plus a loop.

A synchronous ``Histogram.record`` re-cleans and re-hashes its attribute dict
on every call (a measurement object, a cleaned copy, a sorted hash), which is
most of its cost. The pending buffers of :mod:`otel_ml._core.pending` hand over
dozens of values with one and the same attribute dict, so :func:`record_many`
feeds them straight into the aggregations those attributes reach, one lookup
for the batch; only when no aggregation exists yet does the first value go
through the public API (which creates it and applies every check and view).

The SDK internals this reads are probed in :mod:`otel_ml.distro._sdk_internals`:
when they are not there (another SDK version, a proxy or no-op instrument, a
meter disabled by config) it falls back to the public ``record`` per value,
so counts stay exact either way; ``tests/test_aggregate.py`` checks that the
fast path is the one taken on the supported SDKs, and
``tests/test_sdk_fallbacks.py`` that the fallback gives the same figures.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.context import Context

from otel_ml._core.pending import RecordMany, set_accelerator
from otel_ml.distro import _sdk_internals


def install() -> None:
    """Plug the fast path into the instrumentation layer (:func:`otel_ml._core.pending.record_many_for`)."""
    set_accelerator(record_many_for)


def record_many_for(instrument: Any) -> RecordMany | None:
    """A ``record_many(values, attrs, context)`` for a synchronous SDK instrument; None for another kind."""
    if not _is_sdk_instrument(instrument):
        return None
    internals = _sdk_internals.batch_internals()
    if internals is None:
        return None  # the caller records value by value through the public API
    record = getattr(instrument, "record", None) or instrument.add
    found: dict[int, tuple[dict[str, Any], list[_sdk_internals.Target]]] = {}

    def targets_for(attrs: dict[str, Any]) -> list[_sdk_internals.Target] | None:
        # Hashing the attributes and matching views costs as much as a record:
        # done once per attribute dict (the callers' dicts live as long as
        # their model), then only checked to still be the SDK's.
        known = found.get(id(attrs))
        if known is not None and known[0] is attrs and _still_current(internals, instrument, known[1]):
            return known[1]
        targets = _aggregations(internals, instrument, attrs)
        if targets is not None:
            found[id(attrs)] = (attrs, targets)
        return targets

    def record_many(values: Sequence[float], attrs: dict[str, Any], context: Context) -> None:
        if not values:
            return
        rest: Sequence[float] = values
        targets = targets_for(attrs)
        if targets is None:  # the first measurement with these attributes creates the aggregation
            record(values[0], attrs, context=context)
            rest = values[1:]
            targets = targets_for(attrs) if rest else None
        if targets is None:
            for value in rest:
                record(value, attrs, context=context)
            return
        measurement = _Measurement(time.time_ns(), instrument, context)

        def write(aggregation: Any) -> None:
            if internals.feed_histogram(aggregation, rest):
                return
            # One measurement object for the batch: with no exemplar asked for, an
            # aggregation reads the value and keeps nothing (the SDK's own
            # ``Measurement`` is a frozen dataclass, several times dearer to make).
            for value in rest:
                measurement.value = value
                aggregation.aggregate(measurement, False)  # no exemplar: the batch belongs to no span

        for index, target in enumerate(targets):
            try:
                internals.feed(target, write)
            except Exception as exc:  # noqa: BLE001 - an SDK whose aggregations work otherwise than probed
                _sdk_internals.give_up(_sdk_internals.BATCH, exc)
                if index == 0:  # nothing fed yet: the public API takes the whole batch
                    for value in rest:
                        record(value, attrs, context=context)
                return

    return record_many


def _is_sdk_instrument(instrument: Any) -> bool:
    return type(instrument).__module__.startswith("opentelemetry.sdk.")


class _Measurement:
    """What an aggregation reads of ``opentelemetry.sdk.metrics._internal.measurement.Measurement``."""

    __slots__ = ("attributes", "context", "instrument", "time_unix_nano", "value")

    def __init__(self, time_unix_nano: int, instrument: Any, context: Context) -> None:
        self.value: float = 0.0
        self.time_unix_nano = time_unix_nano
        self.instrument = instrument
        self.context = context
        self.attributes = None


def _still_current(
    internals: _sdk_internals.BatchInternals, instrument: Any, targets: list[_sdk_internals.Target]
) -> bool:
    try:
        return internals.enabled(instrument) and all(internals.is_current(target) for target in targets)
    except Exception:  # noqa: BLE001 - not the SDK this was written for
        return False


def _aggregations(
    internals: _sdk_internals.BatchInternals, instrument: Any, attrs: dict[str, Any]
) -> list[_sdk_internals.Target] | None:
    """Where the measurements recorded with ``attrs`` are aggregated, or None to fall back."""
    try:
        if not internals.enabled(instrument):
            return None
        return internals.aggregations(instrument, attrs)
    except Exception as exc:  # noqa: BLE001 - not the SDK this was written for: the public API from now on
        _sdk_internals.give_up(_sdk_internals.BATCH, exc)
        return None
