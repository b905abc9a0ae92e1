"""Process health through opentelemetry-instrumentation-system-metrics: process metrics only, once per provider."""

from __future__ import annotations

import os
import threading

import psutil

import otel_ml
from otel_ml.process import PROCESS_METRICS, ProcessInstrumentor


def _names(telemetry) -> dict[str, list]:  # type: ignore[no-untyped-def,type-arg]
    data = telemetry.reader.get_metrics_data()
    found: dict[str, list] = {}  # type: ignore[type-arg]
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def test_process_metrics_only_with_semantic_convention_names(telemetry) -> None:  # type: ignore[no-untyped-def]
    ProcessInstrumentor().instrument(meter_provider=telemetry.meter_provider)
    found = _names(telemetry)
    assert set(found) == set(PROCESS_METRICS)  # no system.*, no process.runtime.* duplicates
    [threads] = found["process.thread.count"]
    assert threads.value >= threading.active_count()  # Python's threads, and the runtime's own
    [memory] = found["process.memory.usage"]
    rss = psutil.Process(os.getpid()).memory_info().rss
    assert 0.5 * rss < memory.value < 2 * rss
    generations = sorted(p.attributes["cpython.gc.generation"] for p in found["cpython.gc.collections"])
    assert generations == [0, 1, 2]
    assert {p.attributes["type"] for p in found["process.cpu.time"]} == {"user", "system"}


def test_instrumenting_again_adds_no_second_set(telemetry) -> None:  # type: ignore[no-untyped-def]
    otel_ml.instrument(telemetry.meter_provider, telemetry.tracer_provider)
    otel_ml.uninstrument()
    otel_ml.instrument(telemetry.meter_provider, telemetry.tracer_provider)
    found = _names(telemetry)
    assert len(found["process.memory.usage"]) == 1
    assert len(found["process.thread.count"]) == 1


def test_uninstrument_stops_the_series_and_instrumenting_again_resumes_them(telemetry) -> None:  # type: ignore[no-untyped-def]
    ProcessInstrumentor().instrument(meter_provider=telemetry.meter_provider)
    assert set(_names(telemetry)) == set(PROCESS_METRICS)
    ProcessInstrumentor().uninstrument()
    assert _names(telemetry) == {}
    ProcessInstrumentor().instrument(meter_provider=telemetry.meter_provider)
    found = _names(telemetry)
    assert set(found) == set(PROCESS_METRICS)
    assert len(found["process.memory.usage"]) == 1


def test_a_second_provider_gets_its_own_set_and_the_first_stays_quiet(telemetry) -> None:  # type: ignore[no-untyped-def]
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    ProcessInstrumentor().instrument(meter_provider=telemetry.meter_provider)
    ProcessInstrumentor().uninstrument()
    reader = InMemoryMetricReader()
    other = MeterProvider(metric_readers=[reader])
    try:
        ProcessInstrumentor().instrument(meter_provider=other)
        data = reader.get_metrics_data()
        names = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
        assert names == set(PROCESS_METRICS)
        assert _names(telemetry) == {}
    finally:
        ProcessInstrumentor().uninstrument()
        other.shutdown()


def test_the_librarys_own_instrumentor_is_left_as_it_was_found(telemetry) -> None:  # type: ignore[no-untyped-def]
    from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor

    assert not SystemMetricsInstrumentor().is_instrumented_by_opentelemetry
    ProcessInstrumentor().instrument(meter_provider=telemetry.meter_provider)
    assert not SystemMetricsInstrumentor().is_instrumented_by_opentelemetry  # the program may still instrument it
    ProcessInstrumentor().uninstrument()


def test_the_programs_own_system_metrics_instrumentor_keeps_its_configuration(telemetry) -> None:  # type: ignore[no-untyped-def]
    """The library's instrumentor is a singleton whose constructor resets it: otel_ml never calls it."""
    from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    mine = SystemMetricsInstrumentor(config={"system.memory.usage": ["used"]})  # the program's own choice
    ProcessInstrumentor().instrument(meter_provider=telemetry.meter_provider)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        assert mine.is_instrumented_by_opentelemetry is False
        mine.instrument(meter_provider=provider)
        data = reader.get_metrics_data()
        names = sorted({m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics})
        assert names == ["system.memory.usage"]
        assert sorted(_names(telemetry)) == sorted(PROCESS_METRICS)  # and ours are all there
    finally:
        mine.uninstrument()
        ProcessInstrumentor().uninstrument()
        provider.shutdown()
