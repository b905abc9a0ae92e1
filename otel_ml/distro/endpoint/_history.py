"""The live page's memory: the last hour of what ``/metrics`` shows, in fixed-size rings.

The page must not add a second measurement path, nor any work per training
step. So the history is fed from the endpoint's own collection: every
``interval`` seconds a daemon thread asks the endpoint's Prometheus registry
for its families (the same translation ``/metrics`` serves, hence the same
names and values) and keeps one number per series:

- a gauge: its value;
- a counter: its cumulative value (rates are worked out when the page asks);
- a histogram: its cumulative count, and the median, p95 and p99 of the
  observations that arrived since the previous sample (Prometheus's
  ``histogram_quantile`` over the bucket counts' difference).

Memory is bounded whatever the program does: ``capacity`` samples (720 = one
hour at 5 s) for the time axis and for each of at most ``max_series`` series,
each an ``array('d')`` of ``capacity`` floats allocated once, so at most
``(max_series * 4 + 1) * capacity * 8`` bytes (histograms keep four numbers a
sample), 5.9 MB at the defaults, plus a few KB of bookkeeping per series (keys,
a histogram's previous buckets): 6.5 MB measured with 256 histogram series,
under 7 MB (tests/test_page.py). Series beyond the cap are counted, not
kept, unless an idle one can make room: a series of a model or run none of
whose series has changed for :data:`EVICT_IDLE_SAMPLES` samples (a finished
trial of a sweep, whose series the SDK exports forever) gives its place to a
series that just appeared or whose value moves (series with neither
``ml_model_name`` nor ``ml_run_name``, the GPUs', are never given up), so the page keeps showing the current
run (the last values of up to ``4 * max_series`` series not kept are
remembered to tell the moving ones from the idle). Only otel_ml's own families are kept (``ml_*``, ``hw_*``): the
program's other metrics (and the HTTP server's) stay on ``/metrics``.
"""

from __future__ import annotations

import math
import threading
import time
from array import array
from collections.abc import Callable, Iterable
from typing import Any

from otel_ml import environment_variables as ev
from otel_ml._core.guard import report
from otel_ml._core.options import Option, parse_float, parse_int

DEFAULT_INTERVAL = 5.0
DEFAULT_CAPACITY = 720
PAGE_INTERVAL = Option("page_interval", ev.OTEL_ML_PAGE_INTERVAL, parse_float(0, maximum=3600), DEFAULT_INTERVAL)
PAGE_POINTS = Option("page_points", ev.OTEL_ML_PAGE_POINTS, parse_int(2, 100_000), DEFAULT_CAPACITY)
DEFAULT_MAX_SERIES = 256
EVICT_IDLE_SAMPLES = 12
"""Samples without a change after which a series may give its place to a new one when ``max_series`` are kept."""
KEPT_PREFIXES = ("ml_", "hw_")
QUANTILES = (0.5, 0.95, 0.99)
# Labels that are the same on every series of a process: left out of the page's keys.
DROPPED_LABELS = frozenset({"otel_scope_name", "otel_scope_version", "otel_scope_schema_url", "service_instance_id"})

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]
"""(family name, sorted labels) of one series."""


class _Series:
    """One series' rings: one value a sample (four for a histogram: count, p50, p95, p99)."""

    __slots__ = ("buckets", "changed", "kind", "last", "rings", "touched")

    def __init__(self, kind: str, capacity: int) -> None:
        self.kind = kind
        width = 1 + len(QUANTILES) if kind == "histogram" else 1
        self.rings = [array("d", [math.nan]) * capacity for _ in range(width)]
        self.buckets: list[tuple[float, float]] | None = None  # a histogram's previous cumulative buckets
        # When the value last changed (kept beyond the rings: a pause longer than the history still ages).
        self.last, self.changed = math.nan, math.nan
        self.touched = math.nan  # when its value (a histogram's count) last changed: the eviction order


class MetricHistory:
    """A bounded history of the endpoint's series, sampled every ``interval`` seconds.

    Args:
        interval: Seconds between samples.
        capacity: Samples kept per series (the oldest is overwritten).
        max_series: Series kept; later ones are counted in ``dropped_series``.
    """

    def __init__(
        self, interval: float = DEFAULT_INTERVAL, capacity: int = DEFAULT_CAPACITY, max_series: int = DEFAULT_MAX_SERIES
    ) -> None:
        self.interval = interval
        self.capacity = capacity
        self.max_series = max_series
        self.dropped_series = 0
        self._times = array("d", [math.nan]) * capacity
        self._series: dict[SeriesKey, _Series] = {}
        self._waiting: dict[SeriesKey, float] = {}  # the last value of series not kept (bounded)
        self._next = 0  # ring slot of the next sample
        self._count = 0  # samples taken, capped at capacity
        self._lock = threading.Lock()

    @staticmethod
    def max_bytes(capacity: int = DEFAULT_CAPACITY, max_series: int = DEFAULT_MAX_SERIES) -> int:
        """The most bytes the rings can take: the stated memory bound."""
        return (max_series * (1 + len(QUANTILES)) + 1) * capacity * 8

    def nbytes(self) -> int:
        """Bytes held by the rings now (each allocated once, at its full size)."""
        with self._lock:
            rings = [ring for series in self._series.values() for ring in series.rings]
            return sum(ring.itemsize * len(ring) for ring in [self._times, *rings])

    def record(self, families: Iterable[Any], now: float | None = None) -> None:
        """Take one sample from ``prometheus_client`` metric families (a registry's ``collect()``)."""
        now = time.time() if now is None else now
        values: dict[SeriesKey, tuple[str, list[float]]] = {}
        for family in families:
            if not family.name.startswith(KEPT_PREFIXES) or family.type not in ("gauge", "counter", "histogram"):
                continue
            if family.type == "histogram":
                self._histogram_values(family, values)
                continue
            suffix = "_total" if family.type == "counter" else ""
            for sample in family.samples:
                if sample.name == family.name + suffix:
                    values[_key(family.name, sample.labels)] = (family.type, [float(sample.value)])
        with self._lock:
            idle: tuple[list[SeriesKey], set[tuple[str, ...]]] | None = None  # made when first needed
            slot = self._next
            self._times[slot] = now
            for series in self._series.values():
                for ring in series.rings:
                    ring[slot] = math.nan
            for key, (kind, numbers) in values.items():
                found = self._series.get(key)
                if found is None:
                    if len(self._series) >= self.max_series:
                        previous = self._waiting.get(key)
                        if idle is None:
                            idle = self._idle(now)
                        if previous is None:  # new to us: moving unless its model or run is idle
                            moving = _group(key) not in idle[1]
                        else:
                            moving = not _same(previous, numbers[0])
                        if not moving or not idle[0]:
                            self._wait(key, numbers[0])
                            self.dropped_series += 1
                            continue
                        evicted = idle[0].pop()
                        self._wait(evicted, self._series.pop(evicted).last)
                    self._waiting.pop(key, None)
                    found = self._series[key] = _Series(kind, self.capacity)
                series = found
                if not _same(numbers[0], series.last):
                    series.touched = now
                if kind == "histogram":
                    buckets = [(numbers[i], numbers[i + 1]) for i in range(1, len(numbers), 2)]
                    series.rings[0][slot] = numbers[0]
                    for ring, value in zip(series.rings[1:], _quantiles(series.buckets, buckets), strict=True):
                        ring[slot] = value
                    series.buckets = buckets
                    series.last = numbers[0]
                else:
                    series.rings[0][slot] = numbers[0]
                    if numbers[0] != series.last:
                        series.last, series.changed = numbers[0], now
            self._next = (slot + 1) % self.capacity
            self._count = min(self._count + 1, self.capacity)

    def _wait(self, key: SeriesKey, value: float) -> None:
        if len(self._waiting) >= 4 * self.max_series and key not in self._waiting:
            self._waiting.clear()  # the bound; forgotten series count as new once
        self._waiting[key] = value

    def _idle(self, now: float) -> tuple[list[SeriesKey], set[tuple[str, ...]]]:
        """Series of a model or run idle for :data:`EVICT_IDLE_SAMPLES` samples, the longest idle last; those groups.

        (Lock held.)

        Idle by model or run, not by series: a running job's constant learning
        rate is not idle while its step counters move.
        """
        before = now - EVICT_IDLE_SAMPLES * self.interval
        active: dict[tuple[str, ...], float] = {}
        for key, series in self._series.items():
            group = _group(key)
            if group and not math.isnan(series.touched):
                active[group] = max(active.get(group, -math.inf), series.touched)
        idle = []
        groups = set()
        for key in self._series:
            group = _group(key)
            last = active.get(group, -math.inf)
            if group and not last > before:
                idle.append((last, key))
                groups.add(group)
        idle.sort(key=lambda pair: pair[0], reverse=True)
        return [key for _, key in idle], groups

    @staticmethod
    def _histogram_values(family: Any, values: dict[SeriesKey, tuple[str, list[float]]]) -> None:
        """Per series: [count, le1, cumulative1, le2, cumulative2, ...] from the ``_bucket`` samples."""
        for sample in family.samples:
            if sample.name == family.name + "_bucket":
                labels = {k: v for k, v in sample.labels.items() if k != "le"}
                entry = values.setdefault(_key(family.name, labels), ("histogram", [0.0]))[1]
                entry += [float(sample.labels.get("le", "+Inf")), float(sample.value)]
                entry[0] = float(sample.value)  # the +Inf bucket, last, is the count

    def snapshot(self) -> tuple[list[float], dict[SeriesKey, tuple[str, list[list[float]]]]]:
        """The samples in time order: (times, {key: (kind, [values per ring])})."""
        with self._lock:
            start, count = (self._next - self._count) % self.capacity, self._count

            def ordered(ring: array[float]) -> list[float]:  # slices, copied in C: the lock is held briefly
                end = start + count
                return (
                    ring[start:end] if end <= self.capacity else ring[start:] + ring[: end - self.capacity]
                ).tolist()

            times = ordered(self._times)
            series = {key: (s.kind, [ordered(ring) for ring in s.rings]) for key, s in self._series.items()}
        return times, series

    def changed_at(self, key: SeriesKey) -> float | None:
        """When the series' value last changed (for a counter: its last rise), or None if unknown."""
        with self._lock:
            series = self._series.get(key)
            return None if series is None or math.isnan(series.changed) else series.changed


_GROUP_LABELS = ("ml_model_name", "ml_run_name")


def _group(key: SeriesKey) -> tuple[str, ...]:
    """The model and run a series belongs to; empty when it names neither (a GPU's: never given up)."""
    labels = dict(key[1])
    return tuple(labels.get(name, "") for name in _GROUP_LABELS) if any(n in labels for n in _GROUP_LABELS) else ()


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _key(name: str, labels: dict[str, str]) -> SeriesKey:
    return name, tuple(sorted((k, v) for k, v in labels.items() if k not in DROPPED_LABELS))


def _quantiles(before: list[tuple[float, float]] | None, after: list[tuple[float, float]]) -> list[float]:
    """p50/p95/p99 of the observations between two cumulative bucket lists (NaN when none arrived)."""
    if before is None or [le for le, _ in before] != [le for le, _ in after]:
        before = [(le, 0.0) for le, _ in after]
    delta = [(le, a - b) for (le, a), (_, b) in zip(after, before, strict=True)]
    total = delta[-1][1] if delta else 0.0
    if total <= 0:
        return [math.nan] * len(QUANTILES)
    return [_quantile(q, delta, total) for q in QUANTILES]


def _quantile(q: float, buckets: list[tuple[float, float]], total: float) -> float:
    """Prometheus's ``histogram_quantile``: linear within the bucket that holds the rank."""
    rank = q * total
    lower, below = 0.0, 0.0
    for le, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(le):
                return lower  # the highest finite bound, as Prometheus answers
            if cumulative == below:
                return le
            return lower + (le - lower) * (rank - below) / (cumulative - below)
        lower, below = le, cumulative
    return lower


class HistorySampler:
    """The daemon thread that samples ``collect`` into ``history`` every ``history.interval`` seconds."""

    def __init__(self, collect: Callable[[], Iterable[Any]], history: MetricHistory) -> None:
        self._collect = collect
        self.history = history
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> HistorySampler:
        self._thread = threading.Thread(target=self._run, name="otel_ml-page-history", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)  # a collection in progress (a slow NVML call) must not hold up the exit

    def sample(self) -> None:
        """One sample now; a failure is reported once (otel_ml's internal errors) and leaves a gap."""
        try:
            self.history.record(self._collect())
        except Exception as exc:  # noqa: BLE001 - the page must never hurt the program
            report("the live page's history", exc)

    def _run(self) -> None:
        # The first sample one interval after the start: the reader is registered with its provider by then.
        while not self._stop.wait(self.history.interval):
            self.sample()
