"""Every private name of OpenTelemetry that otel_ml reads, in one place, each with a public fallback.

otel_ml supports a range of OpenTelemetry releases (``pyproject.toml``), and
a private name can move in any of them. So each one below is probed once,
lazily (never at import: ``import otel_ml`` must work whatever the SDK), and
when it is not what otel_ml was written for, one INFO line says so and a path
on the public API takes over: the same figures, at more cost.
``tests/test_sdk_fallbacks.py`` forces each fallback and compares its figures
with the fast path's.

- The batch hand-over (:mod:`otel_ml.distro._accelerate`) feeds a batch of
  values straight into the aggregations their attributes reach, one lookup
  per batch: most of a ``record`` is re-cleaning and hashing the same
  attribute dict. It reads ``_ExplicitBucketHistogramAggregation`` and
  ``_hash_attributes`` (1.45; the items' frozenset before) of
  ``opentelemetry.sdk.metrics._internal``; an SDK instrument's
  ``_measurement_consumer._reader_storages`` and ``_is_enabled()``; a
  storage's ``_get_or_init_view_instrument_match``; a match's
  ``_view._attribute_keys`` and ``_attributes_aggregation``; a histogram
  aggregation's ``_boundaries``, ``_lock``, ``_value``, ``_sum``, ``_min``,
  ``_max``, ``_record_min_max`` and ``_get_empty_bucket_counts``; and calls
  an aggregation's ``aggregate(measurement, False)`` with a stand-in for the
  SDK's internal ``Measurement``; where a match has ``_reset_on_collect``
  (1.45.2: delta collections replace its aggregations), its ``_lock`` and
  ``_get_or_create_aggregation``.
  Fallback: the public ``Histogram.record`` / ``Counter.add`` per value, also
  from the first batch whose hand-over fails, for the rest of the process.
- A ``MeterProvider``'s ``_shutdown`` flag (:mod:`otel_ml.distro._exit`): a
  provider the program already shut down is not shut down again at exit (the
  SDK would log a warning). Fallback: ``shutdown()`` again, one SDK warning.
- SDKs before 1.45 forget a synchronous gauge's value at each collection,
  so a loss set at the end of an epoch would be on ``/metrics`` for one
  scrape only (1.45 keeps it under cumulative temporality, as the
  specification asks). Where a behavioural probe (public API) finds an SDK
  that forgets, the providers otel_ml builds give the SDK's ``_Gauge``
  (exported by ``opentelemetry.sdk.metrics`` under that name) instruments a
  last-value aggregation that keeps it: a subclass of
  ``_LastValueAggregation`` (``_value``, ``_lock``), built through
  ``Aggregation._create_aggregation``. Fallback: the SDK's own behaviour
  (the value in the first collection after each ``set``).
- The SDK's and exporters' logger names (:mod:`otel_ml.distro._log_limit`):
  one line per kind of failed export, not one per attempt. No fallback is
  needed: a name an SDK no longer uses filters nothing.
- A loaded ``opentelemetry.exporter.*`` module's global ``random`` (the OTLP
  exporters' retry jitter, :mod:`otel_ml.distro._private_random`), pointed at
  a private generator so a retry never draws from the program's seeded
  ``random``. No fallback is needed: a module without one draws nothing.

What otel_ml no longer reads at all, because a public way gives the same
result: ``opentelemetry.exporter.prometheus._CustomCollector``,
``_should_convert_sum_to_gauge`` and ``_mapping.map_unit`` (the endpoint
translates on the public data model: :mod:`otel_ml.distro.endpoint._exemplars`),
``SimpleFixedSizeExemplarReservoir._find_bucket_index`` and
``BucketIndexError`` (the reservoir implements the public ``ExemplarReservoir``:
:mod:`otel_ml.distro._private_random`), ``_BaseConfigurator`` and
``_import_id_generator`` of ``opentelemetry.sdk._configuration`` (a
configurator is any class with ``configure``; an id generator is an entry point),
``opentelemetry.util._importlib_metadata`` (the standard library's) and
``opentelemetry.metrics._internal._ProxyMeterProvider`` (a provider class
defined by the API package itself is a placeholder).
``MetricReader._receive_metrics`` is the one underscored name otel_ml
*implements*: it is the method the SDK asks every reader subclass to provide.
"""

from __future__ import annotations

import contextlib
import logging
import random
import sys
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any

_LOG = logging.getLogger(__name__)

BATCH = "batch hand-over to the SDK's aggregations"
SHUTDOWN_FLAG = "provider's shutdown flag"
GAUGE = "last-value aggregation (to keep a synchronous gauge's value across collections)"
FALLBACKS = (BATCH, SHUTDOWN_FLAG, GAUGE)

_lock = threading.Lock()
_probed: dict[str, Any] = {}
_forced: set[str] = set()


def _probe(name: str, find: Callable[[], Any], fallback: str) -> Any:
    """``find()`` once per process; None (with one INFO line) when it fails or the tests force the fallback."""
    with _lock:
        if name in _probed:
            return _probed[name]
    found = None
    if name not in _forced:
        try:
            found = find()
        except Exception as exc:  # noqa: BLE001 - any SDK change: missing module, name or shape
            _LOG.debug("otel_ml: probing the %s: %s: %s", name, type(exc).__name__, exc)
    if found is None:
        _LOG.info("otel_ml: the %s is not in this OpenTelemetry SDK (%s); %s", name, _sdk_version(), fallback)
    with _lock:
        return _probed.setdefault(name, found)


def give_up(name: str, exc: BaseException) -> None:
    """A probed name turned out not to be what otel_ml was written for: the fallback from now on."""
    with _lock:
        if _probed.get(name) is None:
            return
        _probed[name] = None
    _LOG.info(
        "otel_ml: the %s does not work with this OpenTelemetry SDK (%s: %s, %s); using the public API from now on",
        name,
        type(exc).__name__,
        exc,
        _sdk_version(),
    )


@contextlib.contextmanager
def forced_fallbacks(*names: str) -> Iterator[None]:
    """For tests: take the public fallback of ``names`` (all by default) inside the block, probe afresh after."""
    with _lock:
        _forced.update(names or FALLBACKS)
        _probed.clear()
    try:
        yield
    finally:
        with _lock:
            _forced.clear()
            _probed.clear()


def _sdk_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"opentelemetry-sdk {version('opentelemetry-sdk')}"
    except PackageNotFoundError:
        return "opentelemetry-sdk not installed"


def _probe_provider_keywords() -> dict[str, Any]:
    """A probe's own MeterProvider reads nothing from the environment (a bad value there must not fail it)."""
    from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter

    return {"shutdown_on_exit": False, "exemplar_filter": AlwaysOffExemplarFilter()}


# --- The batch hand-over (otel_ml.distro._accelerate) ---------------------------------------------


class Target:
    """Where one reader's view aggregates a batch: the view match, the key, the kept attributes, the aggregation."""

    __slots__ = ("aggregation", "attributes", "key", "match")

    def __init__(self, match: Any, key: Any, attributes: dict[str, Any], aggregation: Any) -> None:
        self.match, self.key, self.attributes, self.aggregation = match, key, attributes, aggregation


class BatchInternals:
    """What the batch hand-over reads of the SDK's metrics internals."""

    def __init__(self, histogram: type, key: Callable[[dict[str, Any]], Any]) -> None:
        self.histogram: Any = histogram
        self._key = key

    def aggregations(self, instrument: Any, attrs: dict[str, Any]) -> list[Target] | None:
        """A :class:`Target` for each aggregation ``attrs`` reach, or None when one is not made yet."""
        found = []
        for storage in instrument._measurement_consumer._reader_storages.values():
            for match in storage._get_or_init_view_instrument_match(instrument):
                keys = match._view._attribute_keys
                kept = attrs if keys is None else {k: v for k, v in attrs.items() if k in keys}
                key = self._key(kept)
                aggregation = match._attributes_aggregation.get(key)
                if aggregation is None:
                    return None
                found.append(Target(match, key, kept, aggregation))
        return found

    @staticmethod
    def is_current(target: Target) -> bool:
        """The target's aggregation is still the one its view match collects."""
        return target.match._attributes_aggregation.get(target.key) is target.aggregation

    @staticmethod
    def feed(target: Target, write: Callable[[Any], None]) -> None:
        """``write(aggregation)`` into the aggregation the match collects now.

        SDK 1.45.2 and newer replace a match's aggregations at each *delta*
        collection (``_reset_on_collect``) and aggregate under the match's lock
        so that no measurement lands in one already collected: the same lock is
        held here, and the aggregation is looked up again under it (made, as
        the SDK makes it, if the collection just emptied the table). Older SDKs
        keep one aggregation per attributes for good: their own lock suffices.
        """
        match = target.match
        if not getattr(match, "_reset_on_collect", False):
            write(target.aggregation)
            return
        with match._lock:
            aggregation = match._attributes_aggregation.get(target.key)
            if aggregation is None:
                aggregation = match._get_or_create_aggregation(target.key, target.attributes)
            target.aggregation = aggregation
            write(aggregation)

    @staticmethod
    def enabled(instrument: Any) -> bool:
        """False while the meter is disabled by configuration (SDKs before 1.45 have no such switch)."""
        is_enabled = getattr(instrument, "_is_enabled", None)
        return True if is_enabled is None else bool(is_enabled())

    def feed_histogram(self, aggregation: Any, values: Sequence[float]) -> bool:
        """What ``aggregate`` does per value, under one lock for the batch; the same sums, to the last bit.

        The sum is added value by value, in order, as one ``aggregate`` per value
        would: ``sum(values)`` first would round differently. Every field is read
        before anything is changed, so a histogram that looks different returns
        False untouched and the caller aggregates value by value.
        """
        if type(aggregation) is not self.histogram:
            return False
        try:
            boundaries, lock, min_max = aggregation._boundaries, aggregation._lock, aggregation._record_min_max
            aggregation._value, aggregation._sum, aggregation._min, aggregation._max  # noqa: B018
            aggregation._get_empty_bucket_counts  # noqa: B018
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


def _find_batch_internals() -> BatchInternals:
    from opentelemetry.sdk.metrics._internal import _view_instrument_match
    from opentelemetry.sdk.metrics._internal.aggregation import _ExplicitBucketHistogramAggregation
    from opentelemetry.sdk.metrics._internal.metric_reader_storage import MetricReaderStorage

    if not callable(getattr(MetricReaderStorage, "_get_or_init_view_instrument_match", None)):
        raise AttributeError("MetricReaderStorage._get_or_init_view_instrument_match")
    # SDK 1.45 keys a match's aggregations by _hash_attributes; 1.40 to 1.44 by the items' frozenset.
    hash_attributes = getattr(_view_instrument_match, "_hash_attributes", None)
    key: Callable[[dict[str, Any]], Any] = hash_attributes or (lambda attrs: frozenset(attrs.items()))
    return BatchInternals(_ExplicitBucketHistogramAggregation, key)


def batch_internals() -> BatchInternals | None:
    """The SDK internals of the batch hand-over, or None: then one public ``record`` per value."""
    return _probe(BATCH, _find_batch_internals, "values are recorded one by one (same figures, slower)")  # type: ignore[no-any-return]


# --- The providers' shutdown flag (otel_ml.distro._exit) ------------------------------------------


def _find_shutdown_flag() -> Callable[[Any], bool]:
    from opentelemetry.sdk.metrics import MeterProvider

    # Read on the program's provider itself, never on a new one: this runs at
    # interpreter exit, when building a provider fails (no new futures then).
    # The MeterProvider keeps the flag (and warns when shut down twice); the
    # TracerProvider keeps none and shuts down twice quietly.
    def flag(provider: Any) -> bool:
        if not isinstance(provider, MeterProvider):
            return False
        value = getattr(provider, "_shutdown", None)
        if not isinstance(value, bool):
            raise AttributeError(f"MeterProvider._shutdown is {value!r}, not a flag")
        return value

    return flag


def already_shut_down(provider: Any) -> bool:
    """True when the program shut ``provider`` down itself; False when unknown (then shut down again)."""
    flag = _probe(SHUTDOWN_FLAG, _find_shutdown_flag, "providers are shut down at exit even if already shut down")
    if flag is None:
        return False
    try:
        return bool(flag(provider))
    except AttributeError as exc:
        give_up(SHUTDOWN_FLAG, exc)
        return False


# --- Synchronous gauges on SDKs before 1.45 (otel_ml.distro._private_random's views) -------------

_gauge_lock = threading.Lock()
_sdk_forgets: list[bool] = []


def _sdk_forgets_gauges() -> bool:
    """Whether this SDK reports a synchronous gauge only in the first collection after it is set."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    with _gauge_lock:
        if not _sdk_forgets:
            try:
                reader = InMemoryMetricReader()
                provider = MeterProvider(metric_readers=[reader], **_probe_provider_keywords())
                provider.get_meter("otel_ml.probe").create_gauge("otel_ml.probe").set(1)
                reader.get_metrics_data()
                data = reader.get_metrics_data()
                provider.shutdown()
                points = [
                    p
                    for rm in (data.resource_metrics if data else [])
                    for sm in rm.scope_metrics
                    for m in sm.metrics
                    for p in m.data.data_points
                ]
                _sdk_forgets.append(not points)
            except Exception as exc:  # noqa: BLE001 - an SDK that cannot even do this keeps its own behaviour
                _LOG.debug("otel_ml: probing how the SDK collects a gauge: %s: %s", type(exc).__name__, exc)
                _sdk_forgets.append(False)
        return _sdk_forgets[0]


def _find_keeping_gauge() -> tuple[type, type]:
    from opentelemetry.sdk.metrics import SimpleFixedSizeExemplarReservoir, _Gauge
    from opentelemetry.sdk.metrics._internal.aggregation import _LastValueAggregation
    from opentelemetry.sdk.metrics.export import AggregationTemporality
    from opentelemetry.sdk.metrics.view import Aggregation

    class _KeptLastValue(_LastValueAggregation):  # type: ignore[misc]
        def collect(self, temporality: AggregationTemporality, collection_start_nano: int) -> Any:
            with self._lock:
                kept = self._value
            point = super().collect(temporality, collection_start_nano)
            if kept is not None and temporality is AggregationTemporality.CUMULATIVE:
                with self._lock:
                    if self._value is None:  # not set again in between
                        self._value = kept
            return point

    class KeepLastValueAggregation(Aggregation):  # type: ignore[misc]
        """The last value, kept across cumulative collections (what SDK 1.45 does for synchronous gauges)."""

        def _create_aggregation(
            self, instrument: Any, attributes: Any, reservoir_factory: Any, start_time_unix_nano: int
        ) -> Any:
            keeping: Any = _KeptLastValue
            return keeping(attributes, reservoir_builder=reservoir_factory(_LastValueAggregation))

    # The subclass must still be what the SDK reads back: one set, two collections.
    keeping: Any = _KeptLastValue  # its constructor's arguments are those of 1.40 to 1.44
    kept = keeping({}, reservoir_builder=lambda **kwargs: SimpleFixedSizeExemplarReservoir())
    kept._value = 1.0
    kept.collect(AggregationTemporality.CUMULATIVE, 0)
    if kept._value != 1.0:
        raise AttributeError("_LastValueAggregation._value")
    return _Gauge, KeepLastValueAggregation


def gauge_keeping() -> tuple[type, type] | None:
    """(the SDK's synchronous gauge class, an aggregation class that keeps its value), or None.

    None when the SDK keeps a synchronous gauge's value itself (1.45 and
    later: nothing private is read), or when what the workaround needs moved
    (then the SDK's own behaviour, with one INFO line).
    """
    if not _sdk_forgets_gauges():
        return None
    return _probe(  # type: ignore[no-any-return]
        GAUGE, _find_keeping_gauge, "a synchronous gauge is reported in the first collection after each set only"
    )


# --- Logger names (otel_ml.distro._log_limit) -----------------------------------------------------

# The loggers of the exporters and processors that log once per failed export
# (1.40 to 1.45); a name an SDK no longer uses simply filters nothing.
EXPORT_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http._common",
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.sdk.metrics._internal.export",
    "opentelemetry.sdk._shared_internal",
    "opentelemetry.sdk.trace.export",
)


# --- Exporters' retry jitter (otel_ml.distro._private_random) -------------------------------------


def exporter_modules_drawing_from_random() -> list[ModuleType]:
    """Loaded exporter modules whose global ``random`` is the program's ``random`` module.

    The OTLP exporters draw their retry jitter from it: in 1.45
    ``opentelemetry.exporter.otlp.proto.grpc.exporter`` and
    ``opentelemetry.exporter.otlp.common.http``, in 1.40 the gRPC one and each
    ``opentelemetry.exporter.otlp.proto.http`` signal exporter.
    """
    return [
        module
        for name, module in list(sys.modules.items())
        if name.startswith("opentelemetry.exporter.") and getattr(module, "random", None) is random
    ]


# --- Withdrawing the series of a deleted run (otel_ml.distro.tensorboard_bridge) ------------------

FORGET_SERIES = "per-attribute metric state (to withdraw the series of a deleted run)"


def _find_series_forgetting() -> Callable[[Any, Mapping[str, str]], int]:
    """A function that drops, in every reader's storage, the aggregations that carry every given attribute.

    The OpenTelemetry API cannot withdraw a series: a synchronous gauge or
    counter is reported until the process ends. The bridge forgets a run
    whose files are gone, so its series must stop; a sweep's finished trials
    are released past OTEL_ML_MAX_RUNS pairs (otel_ml._core.cardinality). Read here: the provider's
    ``_measurement_consumer._reader_storages`` -> each storage's
    ``_instrument_view_instrument_matches`` -> each match's
    ``_attributes_aggregation`` (under its ``_lock``), each aggregation's
    ``_attributes`` (1.40 to 1.45).
    """
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    def forget(provider: Any, attributes: Mapping[str, str]) -> int:
        wanted = list(attributes.items())
        removed = 0
        for storage in list(provider._measurement_consumer._reader_storages.values()):
            for matches in list(storage._instrument_view_instrument_matches.values()):
                for match in matches:
                    with match._lock:
                        table = match._attributes_aggregation
                        for aggregation_key, aggregation in list(table.items()):
                            held = aggregation._attributes or {}
                            if all(held.get(key) == value for key, value in wanted):
                                del table[aggregation_key]
                                removed += 1
        return removed

    # The shape must be what this reads: two series, one withdrawn, one collected.
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], **_probe_provider_keywords())
    counter = provider.get_meter("otel_ml.probe").create_counter("otel_ml.probe")
    counter.add(1, {"k": "gone", "j": "x"})
    counter.add(1, {"k": "kept", "j": "x"})
    counter.add(1, {"k": "gone", "j": "y"})
    reader.get_metrics_data()
    removed = forget(provider, {"k": "gone", "j": "x"})
    data = reader.get_metrics_data()
    provider.shutdown()
    left = [
        dict(p.attributes or {})
        for rm in (data.resource_metrics if data else [])
        for sm in rm.scope_metrics
        for m in sm.metrics
        for p in m.data.data_points
    ]
    if removed != 1 or sorted(left, key=str) != [{"k": "gone", "j": "y"}, {"k": "kept", "j": "x"}]:
        raise AttributeError(f"withdrew {removed}, left {left}")
    return forget


def series_forgetting() -> Callable[[Any, Mapping[str, str]], int] | None:
    """``forget(provider, attributes) -> series withdrawn``, or None (the series then stay until a restart)."""
    return _probe(  # type: ignore[no-any-return]
        FORGET_SERIES,
        _find_series_forgetting,
        "the series of a deleted run keep their last values until otel-ml tensorboard restarts",
    )
