"""Hand many values with the same attributes to the SDK at the cost of one measurement plus a loop.

A synchronous ``Histogram.record`` re-cleans and re-hashes its attribute dict
on every call (a measurement object, a cleaned copy, a sorted hash), which is
most of its cost. The pending buffers of :mod:`otel_ml._pending` hand over
dozens of values with one and the same attribute dict, so :func:`record_many`
records the first value through the public API (which creates the
aggregation and applies every check and view) and feeds the rest straight
into the aggregations that measurement reached, one lookup for the batch.

This reads SDK internals of the pinned ``opentelemetry-sdk`` (1.45.1): when
they are not there (another SDK version, a proxy or no-op instrument, a
meter disabled by config) it falls back to ``record`` per value, so counts
stay exact either way; ``tests/test_aggregate.py`` checks that the fast path
is the one taken on the pinned SDK.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.context import Context

RecordMany = Callable[[Sequence[float], dict[str, Any], Context], None]


def record_many_for(instrument: Any) -> RecordMany:
    """A ``record_many(values, attrs, context)`` for a synchronous SDK instrument (histogram or counter)."""
    record = getattr(instrument, "record", None) or instrument.add

    def record_many(values: Sequence[float], attrs: dict[str, Any], context: Context) -> None:
        if not values:
            return
        record(values[0], attrs, context=context)
        rest = values[1:]
        targets = _aggregations(instrument, attrs) if rest else None
        if targets is None:
            for value in rest:
                record(value, attrs, context=context)
            return
        from opentelemetry.sdk.metrics._internal.measurement import Measurement

        now = time.time_ns()
        for value in rest:
            measurement = Measurement(value, now, instrument, context, None)
            for aggregation in targets:
                aggregation.aggregate(measurement, False)  # no exemplar: the batch belongs to no span

    return record_many


def _aggregations(instrument: Any, attrs: dict[str, Any]) -> list[Any] | None:
    """The aggregations the measurement just recorded with ``attrs`` reached, or None to fall back."""
    try:
        from opentelemetry.sdk.metrics._internal._view_instrument_match import _hash_attributes

        if not instrument._is_enabled():
            return None
        found = []
        for storage in instrument._measurement_consumer._reader_storages.values():
            for match in storage._get_or_init_view_instrument_match(instrument):
                keys = match._view._attribute_keys
                kept = attrs if keys is None else {k: v for k, v in attrs.items() if k in keys}
                aggregation = match._attributes_aggregation.get(_hash_attributes(kept))
                if aggregation is None:
                    return None
                found.append(aggregation)
        return found
    except Exception:  # noqa: BLE001 - not the SDK this was written for: the public API does it all
        return None
