"""Nothing of otel_ml draws from the program's random streams: ids, exemplar reservoirs, retry jitter.

Training scripts seed Python's ``random`` for reproducibility
(``keras.utils.set_random_seed``, ``random.seed``), and Keras draws its
default layer seeds from that same generator. Three parts of an SDK set-up
draw from it by default, each of which would change the program's numbers or
repeat ids across runs; otel_ml gives each a private generator instead:

- **Trace and span ids.** The SDK's default id generator draws from
  ``random``: every seeded run, and every worker of a job, would produce the
  same trace ids, and an exemplar's ``trace_id`` would point at several
  traces. :class:`PrivateRandomIdGenerator` draws from a generator seeded from
  the operating system, re-seeded in a forked child (as ``random`` does for its
  own), so workers forked from one parent never share ids. It is not
  ``os.urandom`` per id: that is a system call that releases the GIL, and in a
  busy threaded server each id then waits for the GIL again.
- **Exemplar reservoirs.** The SDK's default reservoir for counters and gauges
  picks which measurement to keep with :func:`random.randrange`, so a seeded
  program that builds a model after a ``fit`` would get other weights when
  instrumented, and how many numbers are drawn depends on timing.
  :class:`PrivateRandomExemplarReservoir` is the same algorithm on the public
  ``ExemplarReservoir`` interface, installed through the SDK's documented
  extension point (a ``View`` with an ``exemplar_reservoir_factory``);
  histograms keep the SDK's deterministic "latest per bucket" reservoir.
- **OTLP retry jitter.** While a collector is down, each retry of an export
  would draw from the program's generator (:func:`private_retry_jitter`).
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import (
    AlignedHistogramBucketExemplarReservoir,
    Counter,
    Exemplar,
    ExemplarReservoir,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.view import View
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.util.types import Attributes

from otel_ml.distro._sdk_internals import exporter_modules_drawing_from_random, gauge_keeping
from otel_ml.distro._views import limited_views

# Seeded from the OS, never from ``random.seed``: its draws are ours alone.
_PRIVATE = random.Random(os.urandom(32))


def _reseed() -> None:
    _PRIVATE.seed(os.urandom(32))


os.register_at_fork(after_in_child=_reseed)


class PrivateRandomIdGenerator(IdGenerator):
    """Ids from otel_ml's own OS-seeded generator, immune to ``random.seed`` and re-seeded after ``fork``.

    Example:
        >>> random.seed(7)
        >>> first = PrivateRandomIdGenerator().generate_trace_id()
        >>> random.seed(7)
        >>> PrivateRandomIdGenerator().generate_trace_id() != first
        True
    """

    def generate_span_id(self) -> int:
        span_id = _PRIVATE.getrandbits(64)
        while span_id == trace.INVALID_SPAN_ID:
            span_id = _PRIVATE.getrandbits(64)
        return span_id

    def generate_trace_id(self) -> int:
        trace_id = _PRIVATE.getrandbits(128)
        while trace_id == trace.INVALID_TRACE_ID:
            trace_id = _PRIVATE.getrandbits(128)
        return trace_id


class _Kept:
    """One reservoir cell: a measurement and the span it was made in."""

    __slots__ = ("attributes", "span_id", "time_unix_nano", "trace_id", "value")

    def __init__(self, value: float, time_unix_nano: int, attributes: Attributes, context: Context | None) -> None:
        self.value, self.time_unix_nano, self.attributes = value, time_unix_nano, attributes
        span = trace.get_current_span(context)
        if span is trace.INVALID_SPAN:
            self.span_id: int | None = None
            self.trace_id: int | None = None
        else:
            span_context = span.get_span_context()
            self.span_id, self.trace_id = span_context.span_id, span_context.trace_id


class PrivateRandomExemplarReservoir(ExemplarReservoir):
    """The SDK's ``SimpleFixedSizeExemplarReservoir`` (uniform reservoir sampling), drawing from a private generator.

    Offered measurement ``n`` (from 1) replaces a random cell with probability
    ``size / n``; ``collect`` returns the kept ones in cell order, without the
    attributes already on the point, and starts afresh: the SDK's algorithm,
    rule for rule (``tests/test_sdk_fallbacks.py`` compares the two), written
    on the public interface so it does not depend on the SDK's private hooks.

    Example:
        >>> reservoir = PrivateRandomExemplarReservoir(size=1)
        >>> state = random.getstate()
        >>> for value in range(100):
        ...     reservoir.offer(value, 0, {}, Context())
        >>> random.getstate() == state
        True
    """

    def __init__(self, size: int = 1, **kwargs: Any) -> None:
        super().__init__()
        self._size = size
        self._cells: dict[int, _Kept] = {}
        self._seen = 0
        self._lock = threading.Lock()

    def offer(self, value: float, time_unix_nano: int, attributes: Attributes, context: Context) -> None:
        with self._lock:
            self._seen += 1
            index = self._seen - 1 if self._seen <= self._size else _PRIVATE.randrange(0, self._seen)
            if index < self._size:
                self._cells[index] = _Kept(value, time_unix_nano, attributes, context)

    def collect(self, point_attributes: Attributes) -> list[Exemplar]:
        with self._lock:
            cells, self._cells, self._seen = self._cells, {}, 0
        on_point = point_attributes or {}
        return [
            Exemplar(
                {k: v for k, v in kept.attributes.items() if k not in on_point} if kept.attributes else None,
                kept.value,
                kept.time_unix_nano,
                kept.span_id,
                kept.trace_id,
            )
            for _, kept in sorted(cells.items())
        ]


def _reservoir(**kwargs: Any) -> ExemplarReservoir:
    # An explicit-bucket histogram's aggregation builds its reservoir with its
    # ``boundaries`` (the SDK's documented builder contract); every other one
    # with ``size`` or nothing.
    if "boundaries" in kwargs:
        return AlignedHistogramBucketExemplarReservoir(**kwargs)
    return PrivateRandomExemplarReservoir(**kwargs)


def _reservoir_factory(aggregation_type: type[Any]) -> Any:
    return _reservoir


def seed_safe_views(limits: Mapping[str, int] | None = None) -> list[View]:
    """Views for a ``MeterProvider`` otel_ml builds: every instrument, private exemplar sampling.

    ``limits``: instrument name -> series limit, for the instruments otel_ml
    bounds above the SDK's default (:mod:`otel_ml.distro._views`).

    On an SDK that forgets a synchronous gauge's value at each collection
    (before 1.45), one view per instrument kind instead, the gauges' keeping
    their last value (:func:`otel_ml.distro._sdk_internals.gauge_keeping`);
    an instrument no view matches gets the SDK's default view. Those SDKs
    limit no instrument's series, so ``limits`` has nothing to raise there.
    """
    keeping = gauge_keeping()
    if keeping is None:
        return limited_views(limits or {}, exemplar_reservoir_factory=_reservoir_factory)
    gauge, keep_last = keeping
    kinds = (Counter, UpDownCounter, Histogram, ObservableCounter, ObservableUpDownCounter, ObservableGauge)
    return [
        *(View(instrument_type=kind, exemplar_reservoir_factory=_reservoir_factory) for kind in kinds),
        View(instrument_type=gauge, aggregation=keep_last(), exemplar_reservoir_factory=_reservoir_factory),
    ]


def private_retry_jitter() -> None:
    """Give the OTLP exporters' retry jitter the private generator, not the program's ``random``.

    Done where otel_ml builds the exporters; a module already pointing
    elsewhere is left as it is.
    """
    for module in exporter_modules_drawing_from_random():
        module.random = _PRIVATE  # type: ignore[attr-defined]
