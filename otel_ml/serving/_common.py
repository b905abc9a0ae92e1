"""What the serving helpers share: their meter, the model's attributes, lock-free tallies, live objects.

The helpers sit on every request of a service, so their counts are not SDK
measurements per call (several microseconds of attribute hashing each): they
are :class:`Tally` bumps, read by observable instruments at collection. The
observable instruments are created once per meter provider (the SDK cannot
drop one) and read every live helper of that provider, held weakly.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Final

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from otel_ml._core import semconv as sc
from otel_ml._core.guard import report
from otel_ml._core.observe import Binding, binding_for
from otel_ml._core.pending import FLUSH_NS, NO_EXEMPLAR, hand_over_on_demand, record_many_for
from otel_ml._core.text import valid_label
from otel_ml.version import __version__

MAX_LABEL_LENGTH: Final = 128
OTHER: Final = "_OTHER"


def meter(meter_provider: metrics.MeterProvider | None) -> metrics.Meter:
    """The ``otel_ml.serving`` meter of ``meter_provider`` (default: the global provider, even if set later)."""
    return metrics.get_meter("otel_ml.serving", __version__, meter_provider)


def model_attributes(model_name: str, version: str | int | None) -> dict[str, Any]:
    """``ml.model.name`` (and ``ml.model.version``); raises ValueError naming what is accepted."""
    if not isinstance(model_name, str) or not model_name.strip() or len(model_name) > MAX_LABEL_LENGTH:
        raise ValueError(
            f"model_name {model_name!r} is invalid: expected a non-empty string of at most {MAX_LABEL_LENGTH}"
        )
    attrs: dict[str, Any] = {sc.ML_MODEL_NAME: valid_label(model_name)}  # e.g. a name from a path
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, (str, int)) or not str(version).strip():
            raise ValueError(f"version {version!r} is invalid: expected a non-empty string, a whole number or None")
        attrs[sc.ML_MODEL_VERSION] = valid_label(version)[:MAX_LABEL_LENGTH]
    return attrs


class Tally:
    """A count that any thread bumps with one atomic C call (``next`` on ``itertools.count``).

    Example:
        >>> tally = Tally()
        >>> for _ in range(3):
        ...     _ = tally.bump()
        >>> tally.value(), tally.value()
        (3, 3)
    """

    __slots__ = ("_count", "_lock", "_reads", "bump")

    def __init__(self) -> None:
        self._count = itertools.count()
        self.bump: Callable[[], object] = self._count.__next__
        self._reads = 0
        self._lock = threading.Lock()

    def value(self) -> int:
        """Bumps so far. A read consumes one step of the counter too: the reads are subtracted."""
        with self._lock:
            value = next(self._count) - self._reads
            self._reads += 1
            return value


_WAIT_S: Final = 1.0
"""The most a collection, a hand-over or uninstrument waits for a flush under way in another thread."""
SPAN_KEY: Final = next(iter(NO_EXEMPLAR))
"""The context key the current span is kept under (read with public API only, as in :mod:`otel_ml.paddle._run`)."""


def exemplar_possible(ctx: Any) -> bool:
    """Whether a measurement in ``ctx`` could carry an exemplar: the context holds a sampled span.

    The SDK's default (trace-based) exemplar filter keeps an exemplar only
    for a measurement made in a sampled span's context; without one, when a
    measurement reaches the SDK does not change any figure it exports.
    """
    span = ctx.get(SPAN_KEY) if ctx else None
    return span is not None and bool(span.get_span_context().trace_flags.sampled)


class Deferred:
    """A synchronous histogram's measurements that no exemplar could take, handed to the SDK in batches.

    One ``Histogram.record`` cleans and hashes its attributes and builds a
    measurement object every time: on a small model's request path, two of
    them (HTTP duration, queue wait) cost more than the rest of our work.
    A request with no sampled span appends ``(value, attrs)`` here instead;
    the values reach the SDK at most every :data:`FLUSH_NS` from the request
    path, and all of them before every collection (:func:`_observe_all`, which
    the SDK runs before it reads the synchronous instruments), at a SIGTERM's
    hand-over and at uninstrument. ``attrs`` must be long-lived dicts (cached
    by the caller): the batch is grouped by their identity.
    """

    __slots__ = ("__weakref__", "_lock", "_many", "_pending", "next_flush")

    def __init__(self, instrument: Any) -> None:
        self._pending: list[tuple[float, dict[str, Any]]] = []
        self._many = record_many_for(instrument)
        self._lock = threading.Lock()
        self.next_flush = 0
        _deferred.add(self)
        hand_over_on_demand(self)

    def add(self, value: float, attrs: dict[str, Any]) -> None:
        """Keep one measurement; hand the batch over when it is due (the caller catches any error)."""
        self._pending.append((value, attrs))
        _holding[id(self)] = self  # kept alive while it holds measurements, even if its owner is dropped
        if time.perf_counter_ns() >= self.next_flush:
            self.flush(wait=False)

    def flush(self, wait: bool = True) -> None:
        """Hand every kept measurement to the SDK; ``wait=False`` skips when another thread is at it.

        ``wait=True`` waits at most :data:`_WAIT_S`: the thread at it may be the one a SIGTERM interrupted
        (whose handler waits for the export that runs this), and what it holds stays for the next collection.
        """
        self.next_flush = time.perf_counter_ns() + FLUSH_NS
        if not (self._lock.acquire(timeout=_WAIT_S) if wait else self._lock.acquire(blocking=False)):
            return
        try:
            pending = self._pending
            count = len(pending)
            if not count:
                return
            taken = pending[:count]
            del pending[:count]  # appends made meanwhile by other threads stay for next time
            groups: dict[int, tuple[dict[str, Any], list[float]]] = {}
            for value, attrs in taken:
                group = groups.get(id(attrs))
                if group is None:
                    groups[id(attrs)] = (attrs, [value])
                else:
                    group[1].append(value)
            for attrs, values in groups.values():
                self._many(values, attrs, NO_EXEMPLAR)
        finally:
            if not self._pending:
                _holding.pop(id(self), None)
                if self._pending:  # an add() between the check and the pop: keep holding its values
                    _holding[id(self)] = self
            self._lock.release()

    def hand_over(self) -> None:
        """:func:`otel_ml._core.pending.hand_over_now` (a SIGTERM's last export): everything, now."""
        self.flush(wait=True)


_deferred: weakref.WeakSet[Deferred] = weakref.WeakSet()
_holding: dict[int, Deferred] = {}


def _after_fork_in_child() -> None:
    """A child forked while another thread was in :meth:`Deferred.flush` inherits its lock held by a thread it
    does not have: a fresh lock each, or every collection of the child (and its exit's last export) waits forever.
    Measurements kept and not yet handed over stay (the parent's collection before a pre-fork takes them there)."""
    for deferred in list(_deferred):
        deferred._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def flush_deferred() -> None:
    """Hand every :class:`Deferred`'s measurements to the SDK (before a collection reads them); never raises."""
    for deferred in list(_deferred):
        try:
            deferred.flush(wait=True)
        except Exception as exc:  # noqa: BLE001 - a collection goes on with what reached the SDK
            report("serving.deferred.flush", exc)


def live_set(meter_provider: metrics.MeterProvider | None, key: str, create: Callable[[Callback], None]) -> Any:
    """The weak set of live helpers that the ``key`` observable instruments of the provider read.

    ``create(callback)`` makes those instruments, once per provider, with a
    callback that calls ``helper.observe()`` on each live helper and sums
    equal attribute sets (two helpers of one model are one series).
    """
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()

    def make(binding: Binding[Any]) -> None:
        binding.bind(weakref.WeakSet())
        create(binding.callback(_observe_all))

    return binding_for(provider, key, make).state


Callback = Callable[[CallbackOptions], Iterable[Observation]]


def _observe_all(helpers: Any, options: CallbackOptions) -> Iterable[Observation]:
    flush_deferred()  # the SDK runs the callbacks before it reads the synchronous instruments
    totals: dict[frozenset[tuple[str, Any]], tuple[int, dict[str, Any]]] = {}
    for helper in list(helpers):
        for value, attrs in helper.observe():
            key = frozenset(attrs.items())
            previous = totals.get(key)
            totals[key] = ((previous[0] if previous else 0) + value, attrs)
    return [Observation(value, attrs) for value, attrs in totals.values()]


def render_label(label: str) -> str:
    """A class label as a label value: itself up to ``MAX_LABEL_LENGTH``, else cut with a digest of the whole.

    Labels are compared whole; only their rendering is bounded, and two long
    labels that share a prefix still render apart.

    Example:
        >>> render_label("cat")
        'cat'
        >>> a, b = render_label("x" * 200 + "a"), render_label("x" * 200 + "b")
        >>> len(a), a == b
        (128, False)
    """
    label = valid_label(label)  # class names from a dataset's directory names may hold undecodable bytes
    if len(label) <= MAX_LABEL_LENGTH:
        return label
    digest = hashlib.sha256(label.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{label[: MAX_LABEL_LENGTH - 13]}~{digest}"
