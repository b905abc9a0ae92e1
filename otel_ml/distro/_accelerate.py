"""Hand many values with the same attributes to the SDK at the cost of one measurement plus a loop.

A synchronous ``Histogram.record`` re-cleans and re-hashes its attribute dict
on every call (a measurement object, a cleaned copy, a sorted hash), which is
most of its cost. The pending buffers of :mod:`otel_ml._core.pending` hand over
dozens of values with one and the same attribute dict, so :func:`record_many`
feeds them straight into the aggregations those attributes reach, one lookup
for the batch; only when no aggregation exists yet does the first value go
through the public API (which creates it and applies every check and view).

This reads SDK internals of the pinned ``opentelemetry-sdk`` (1.45.1): when
they are not there (another SDK version, a proxy or no-op instrument, a
meter disabled by config) it falls back to ``record`` per value, so counts
stay exact either way; ``tests/test_aggregate.py`` checks that the fast path
is the one taken on the pinned SDK.
"""

from __future__ import annotations

import functools
import time
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

from opentelemetry.context import Context

from otel_ml._core.pending import RecordMany, set_accelerator


def install() -> None:
    """Plug the fast path into the instrumentation layer (:func:`otel_ml._core.pending.record_many_for`)."""
    set_accelerator(record_many_for)


def record_many_for(instrument: Any) -> RecordMany | None:
    """A ``record_many(values, attrs, context)`` for a synchronous SDK instrument; None for another kind."""
    if not _is_sdk_instrument(instrument):
        return None
    record = getattr(instrument, "record", None) or instrument.add
    found: dict[int, tuple[dict[str, Any], list[_Target]]] = {}

    def targets_for(attrs: dict[str, Any]) -> list[Any] | None:
        # Hashing the attributes and matching views costs as much as a record:
        # done once per attribute dict (the callers' dicts live as long as
        # their model), then only checked to still be the SDK's.
        known = found.get(id(attrs))
        if known is not None and known[0] is attrs and _still_current(instrument, known[1]):
            return [aggregation for _, _, aggregation in known[1]]
        targets = _aggregations(instrument, attrs)
        if targets is not None:
            found[id(attrs)] = (attrs, targets)
            return [aggregation for _, _, aggregation in targets]
        return None

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
        measurement = None
        for aggregation in targets:
            if type(aggregation) is _histogram_class() and _feed_histogram(aggregation, rest):
                continue
            # One measurement object for the batch: with no exemplar asked for, an
            # aggregation reads the value and keeps nothing (the SDK's own
            # ``Measurement`` is a frozen dataclass, several times dearer to make).
            measurement = measurement or _Measurement(time.time_ns(), instrument, context)
            for value in rest:
                measurement.value = value
                aggregation.aggregate(measurement, False)  # no exemplar: the batch belongs to no span

    return record_many


def _is_sdk_instrument(instrument: Any) -> bool:
    return type(instrument).__module__.startswith("opentelemetry.sdk.")


@functools.cache
def _histogram_class() -> type:
    from opentelemetry.sdk.metrics._internal.aggregation import _ExplicitBucketHistogramAggregation

    return _ExplicitBucketHistogramAggregation


def _feed_histogram(aggregation: Any, values: Sequence[float]) -> bool:
    """What ``aggregate`` does per value, under one lock for the batch; the same sums, to the last bit.

    The sum is added value by value, in order, as one ``aggregate`` per value
    would: ``sum(values)`` first would round differently. Every field is read
    before anything is changed, so an SDK whose histogram looks different
    returns False untouched and the caller aggregates value by value.
    """
    try:
        boundaries, lock, min_max = aggregation._boundaries, aggregation._lock, aggregation._record_min_max
        aggregation._value, aggregation._sum, aggregation._min, aggregation._max, aggregation._get_empty_bucket_counts  # noqa: B018
    except AttributeError:
        return False
    with lock:
        if aggregation._value is None:
            aggregation._value = aggregation._get_empty_bucket_counts()
        counts = aggregation._value
        total = aggregation._sum
        for value in values:
            total += value
            counts[bisect_left(boundaries, value)] += 1
        aggregation._sum = total
        if min_max:
            aggregation._min = min(aggregation._min, *values)
            aggregation._max = max(aggregation._max, *values)
    return True


class _Measurement:
    """What an aggregation reads of ``opentelemetry.sdk.metrics._internal.measurement.Measurement``."""

    __slots__ = ("attributes", "context", "instrument", "time_unix_nano", "value")

    def __init__(self, time_unix_nano: int, instrument: Any, context: Context) -> None:
        self.value: float = 0.0
        self.time_unix_nano = time_unix_nano
        self.instrument = instrument
        self.context = context
        self.attributes = None


_Target = tuple[dict[Any, Any], Any, Any]
"""Where an aggregation is kept (its view match's table), under which key, and the aggregation."""


def _still_current(instrument: Any, targets: list[_Target]) -> bool:
    try:
        return bool(instrument._is_enabled()) and all(table.get(key) is agg for table, key, agg in targets)
    except Exception:  # noqa: BLE001 - not the SDK this was written for
        return False


def _aggregations(instrument: Any, attrs: dict[str, Any]) -> list[_Target] | None:
    """Where the measurements recorded with ``attrs`` are aggregated, or None to fall back."""
    try:
        from opentelemetry.sdk.metrics._internal._view_instrument_match import _hash_attributes

        if not instrument._is_enabled():
            return None
        found = []
        for storage in instrument._measurement_consumer._reader_storages.values():
            for match in storage._get_or_init_view_instrument_match(instrument):
                keys = match._view._attribute_keys
                kept = attrs if keys is None else {k: v for k, v in attrs.items() if k in keys}
                table, key = match._attributes_aggregation, _hash_attributes(kept)
                aggregation = table.get(key)
                if aggregation is None:
                    return None
                found.append((table, key, aggregation))
        return found
    except Exception:  # noqa: BLE001 - not the SDK this was written for: the public API does it all
        return None
