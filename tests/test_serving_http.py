"""otel_ml.serving.instrument_flask_app: the stable HTTP series, bounded, and server spans only when sampled."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from flask import Flask
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from otel_ml._core import semconv as sc
from otel_ml._core.guard import error_counts
from otel_ml.distro._sampling import SlowSpansOnly
from otel_ml.serving import instrument_flask_app, uninstrument_flask_app
from otel_ml.serving._http import HttpServerTelemetry

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
PARENT_ID = 0xB7AD6B7169203331
TRACEPARENT = f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-01"


def _app(tracer_provider: Any = None) -> Flask:
    app = Flask("demo")
    tracer = trace.get_tracer("demo", tracer_provider=tracer_provider)
    release = threading.Event()
    app.extensions["release"] = release
    app.extensions["entered"] = threading.Event()

    @app.get("/items/<int:item>")
    def item(item: int) -> Any:
        with tracer.start_as_current_span("inner", attributes={sc.ML_SLOW_THRESHOLD: 0.1}):
            return {"item": item}

    @app.post("/fail")
    def fail() -> Any:
        return 1 / 0

    @app.post("/wait")
    def wait() -> Any:
        app.extensions["entered"].set()
        release.wait(10)
        return {}

    return app


def _durations(telemetry: Any) -> dict[tuple[tuple[str, Any], ...], int]:
    return {k: p.count for k, p in telemetry.points_by(sc.METRIC_HTTP_SERVER_REQUEST_DURATION).items()}


_NAMES = {"method": sc.HTTP_REQUEST_METHOD, "route": sc.HTTP_ROUTE, "status": sc.HTTP_RESPONSE_STATUS_CODE}


def _key(**attrs: Any) -> tuple[tuple[str, Any], ...]:
    """A duration series' sorted attributes: scheme http, HTTP/1.1, and ``method``, ``route``, ``status``, ``error``."""
    named = {_NAMES.get(k, sc.ERROR_TYPE): v for k, v in attrs.items()}
    return tuple(sorted({sc.URL_SCHEME: "http", sc.NETWORK_PROTOCOL_VERSION: "1.1", **named}.items()))


def test_requests_are_counted_by_method_route_status_and_error(telemetry) -> None:  # type: ignore[no-untyped-def]
    app = _app(telemetry.tracer_provider)
    assert instrument_flask_app(app, telemetry.meter_provider, telemetry.tracer_provider)
    client = app.test_client()
    for _ in range(3):
        assert client.get("/items/7").status_code == 200
    assert client.post("/fail").status_code == 500
    assert client.get("/no/such/path").status_code == 404
    assert client.open("/items/7", method="BREW").status_code == 405
    assert _durations(telemetry) == {
        _key(method="GET", route="/items/<int:item>", status=200): 3,
        _key(method="POST", route="/fail", status=500, error="500"): 1,
        _key(method="GET", status=404): 1,
        _key(method="_OTHER", status=405): 1,  # the method matched no rule: no route
    }


def test_an_exception_that_propagates_is_a_500_with_its_type(telemetry) -> None:  # type: ignore[no-untyped-def]
    app = _app()
    app.testing = True  # Flask re-raises instead of answering 500
    instrument_flask_app(app, telemetry.meter_provider, telemetry.tracer_provider)
    with pytest.raises(ZeroDivisionError):
        app.test_client().post("/fail")
    # No response, so no route either: Flask left the request context before anything could read it.
    assert _durations(telemetry) == {_key(method="POST", status=500, error="ZeroDivisionError"): 1}
    [span] = [s for s in telemetry.finished() if s.kind is SpanKind.SERVER]
    assert span.status.status_code is StatusCode.ERROR and span.events[0].name == "exception"


def test_random_hosts_and_paths_add_no_series(telemetry) -> None:  # type: ignore[no-untyped-def]
    app = _app()
    instrument_flask_app(app, telemetry.meter_provider, telemetry.tracer_provider)
    client = app.test_client()
    client.get("/items/1")
    client.get("/nothing")
    before = set(_durations(telemetry))
    for i in range(30):
        host = f"h{i}-{uuid.uuid4().hex[:8]}.example"
        assert client.get(f"/items/{i}", headers={"Host": host}).status_code == 200
        assert client.get(f"/{uuid.uuid4().hex}", headers={"Host": host}).status_code == 404
    assert set(_durations(telemetry)) == before and len(before) == 2
    assert len(telemetry.points(sc.METRIC_HTTP_SERVER_ACTIVE_REQUESTS)) == 1


def test_the_server_span_continues_the_callers_trace_and_parents_the_handlers_spans(telemetry) -> None:  # type: ignore[no-untyped-def]
    app = _app(telemetry.tracer_provider)
    instrument_flask_app(app, telemetry.meter_provider, telemetry.tracer_provider)
    assert app.test_client().get("/items/3", headers={"traceparent": TRACEPARENT}).status_code == 200
    [server] = telemetry.finished("GET /items/<int:item>")
    [inner] = telemetry.finished("inner")
    assert server.kind is SpanKind.SERVER and server.parent is not None and server.parent.span_id == PARENT_ID
    assert server.context.trace_id == inner.context.trace_id == TRACE_ID
    assert inner.parent is not None and inner.parent.span_id == server.context.span_id
    expected = dict(_key(method="GET", route="/items/<int:item>", status=200))
    assert dict(server.attributes) == {**expected, sc.URL_PATH: "/items/3"}


def test_no_server_span_when_the_sampler_keeps_only_slow_spans(telemetry) -> None:  # type: ignore[no-untyped-def]
    provider = TracerProvider(sampler=SlowSpansOnly())
    provider.add_span_processor(SimpleSpanProcessor(telemetry.spans))
    app = _app(provider)
    instrument_flask_app(app, telemetry.meter_provider, provider)
    assert app.test_client().get("/items/3", headers={"traceparent": TRACEPARENT}).status_code == 200
    [inner] = telemetry.finished()  # the slow span only, still in the caller's trace, under the caller's span
    assert inner.name == "inner" and inner.context.trace_id == TRACE_ID
    assert inner.parent is not None and inner.parent.span_id == PARENT_ID
    assert sum(_durations(telemetry).values()) == 1
    provider.shutdown()


def test_requests_in_progress_are_visible(telemetry) -> None:  # type: ignore[no-untyped-def]
    app = _app()
    instrument_flask_app(app, telemetry.meter_provider, telemetry.tracer_provider)
    thread = threading.Thread(target=lambda: app.test_client().post("/wait"))
    thread.start()
    assert app.extensions["entered"].wait(10)
    active = {sc.HTTP_REQUEST_METHOD: "POST", sc.URL_SCHEME: "http"}
    assert [(dict(p.attributes), p.value) for p in telemetry.points(sc.METRIC_HTTP_SERVER_ACTIVE_REQUESTS)] == [
        (active, 1)
    ]
    app.extensions["release"].set()
    thread.join(10)
    assert [(dict(p.attributes), p.value) for p in telemetry.points(sc.METRIC_HTTP_SERVER_ACTIVE_REQUESTS)] == [
        (active, 0)
    ]


def test_instrumenting_twice_or_after_the_flask_instrumentation_changes_nothing(telemetry) -> None:  # type: ignore[no-untyped-def]
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    app = _app()
    assert instrument_flask_app(app, telemetry.meter_provider, telemetry.tracer_provider)
    wrapped = app.wsgi_app
    assert not instrument_flask_app(app, telemetry.meter_provider, telemetry.tracer_provider)
    assert app.wsgi_app is wrapped
    app.test_client().get("/items/1")
    assert sum(_durations(telemetry).values()) == 1
    other = _app()
    FlaskInstrumentor().instrument_app(other, meter_provider=telemetry.meter_provider)
    try:
        assert not instrument_flask_app(other, telemetry.meter_provider)
    finally:
        FlaskInstrumentor().uninstrument_app(other)


@pytest.mark.internal_errors_expected
def test_a_failure_of_ours_is_logged_and_the_answer_is_unchanged(telemetry) -> None:  # type: ignore[no-untyped-def]
    app = _app()

    def broken_route() -> str:
        raise RuntimeError("bug")

    app.wsgi_app = HttpServerTelemetry(app.wsgi_app, broken_route, telemetry.meter_provider)  # type: ignore[method-assign]
    response = app.test_client().get("/items/5")
    assert response.status_code == 200 and response.get_json() == {"item": 5}
    assert error_counts()[("serving.http.start_response", RuntimeError)] >= 1
    assert _durations(telemetry) == {_key(method="GET", status=200): 1}


def test_same_series_as_the_flask_instrumentation_in_the_stable_conventions(telemetry, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from opentelemetry.instrumentation._semconv import (
        _OpenTelemetrySemanticConventionStability as Stability,
    )
    from opentelemetry.instrumentation._semconv import _OpenTelemetryStabilitySignalType, _StabilityMode
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from tests._telemetry import Telemetry

    # The conventions are chosen once per process: force the stable ones for this test only, then undo.
    monkeypatch.setattr(Stability, "_initialized", Stability._initialized)
    monkeypatch.setattr(
        Stability, "_OTEL_SEMCONV_STABILITY_SIGNAL_MAPPING", Stability._OTEL_SEMCONV_STABILITY_SIGNAL_MAPPING
    )
    Stability._initialize()
    monkeypatch.setitem(
        Stability._OTEL_SEMCONV_STABILITY_SIGNAL_MAPPING, _OpenTelemetryStabilitySignalType.HTTP, _StabilityMode.HTTP
    )
    theirs = Telemetry(InMemoryMetricReader(), telemetry.spans, MeterProvider(), telemetry.tracer_provider)
    theirs.meter_provider = MeterProvider(metric_readers=[theirs.reader])
    ours, contrib = _app(), _app()
    instrument_flask_app(ours, telemetry.meter_provider, telemetry.tracer_provider)
    FlaskInstrumentor().instrument_app(
        contrib, meter_provider=theirs.meter_provider, tracer_provider=telemetry.tracer_provider
    )
    try:
        for app in (ours, contrib):
            client = app.test_client()
            client.get("/items/1")
            client.post("/fail")
            client.get("/missing")
    finally:
        FlaskInstrumentor().uninstrument_app(contrib)
    for name in (sc.METRIC_HTTP_SERVER_REQUEST_DURATION, sc.METRIC_HTTP_SERVER_ACTIVE_REQUESTS):
        assert set(telemetry.points_by(name)) == set(theirs.points_by(name)), name
    assert len(telemetry.points_by(sc.METRIC_HTTP_SERVER_REQUEST_DURATION)) == 3
    theirs.meter_provider.shutdown()


def test_uninstrument_restores_the_exact_wsgi_app_and_records_nothing_more(telemetry) -> None:  # type: ignore[no-untyped-def]
    app = _app()
    assert "wsgi_app" not in vars(app)  # Flask's own method, found on the class
    assert instrument_flask_app(app, telemetry.meter_provider, telemetry.tracer_provider)
    assert isinstance(vars(app)["wsgi_app"], HttpServerTelemetry)
    client = app.test_client()
    client.get("/items/1")
    assert uninstrument_flask_app(app)
    assert "wsgi_app" not in vars(app) and app.wsgi_app == Flask.wsgi_app.__get__(app)
    assert not uninstrument_flask_app(app)  # twice is harmless
    client.get("/items/1")
    assert sum(_durations(telemetry).values()) == 1
    assert telemetry.points(sc.METRIC_HTTP_SERVER_ACTIVE_REQUESTS) == []  # the wrapper is gone from the live set
    assert instrument_flask_app(app, telemetry.meter_provider, telemetry.tracer_provider)  # and again
    client.get("/items/1")
    assert sum(_durations(telemetry).values()) == 2


def test_uninstrument_puts_back_the_programs_own_middleware(telemetry) -> None:  # type: ignore[no-untyped-def]
    app = _app()
    middleware = app.wsgi_app = _Middleware(app.wsgi_app)  # type: ignore[method-assign]
    assert instrument_flask_app(app, telemetry.meter_provider, telemetry.tracer_provider)
    app.test_client().get("/items/1")
    assert middleware.calls == 1 and sum(_durations(telemetry).values()) == 1
    assert uninstrument_flask_app(app)
    assert vars(app)["wsgi_app"] is middleware


def test_uninstrument_after_the_program_wrapped_us_again_passes_requests_through(telemetry) -> None:  # type: ignore[no-untyped-def]
    """``app.wsgi_app = ProxyFix(app.wsgi_app)`` after instrumenting: our wrapper stays in that chain, inert."""
    app = _app()
    assert instrument_flask_app(app, telemetry.meter_provider, telemetry.tracer_provider)
    middleware = app.wsgi_app = _Middleware(app.wsgi_app)  # type: ignore[method-assign]
    client = app.test_client()
    client.get("/items/1")
    assert uninstrument_flask_app(app)
    assert vars(app)["wsgi_app"] is middleware  # the program's wrapper is left where it is
    for _ in range(5):
        assert client.get("/items/1").json == {"item": 1}
    assert middleware.calls == 6 and sum(_durations(telemetry).values()) == 1  # nothing recorded after the undo
    assert telemetry.points(sc.METRIC_HTTP_SERVER_ACTIVE_REQUESTS) == []
    assert instrument_flask_app(app, telemetry.meter_provider, telemetry.tracer_provider)  # on again: counted once
    client.get("/items/1")
    assert sum(_durations(telemetry).values()) == 2


def test_uninstrument_leaves_an_app_it_did_not_instrument_alone(telemetry) -> None:  # type: ignore[no-untyped-def]
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    app = _app()
    FlaskInstrumentor().instrument_app(app, meter_provider=telemetry.meter_provider)
    try:
        wrapped = app.wsgi_app
        assert not uninstrument_flask_app(app)
        assert app.wsgi_app is wrapped
    finally:
        FlaskInstrumentor().uninstrument_app(app)


class _Middleware:
    """A WSGI middleware of the program's own, set as ``app.wsgi_app`` the way Flask's docs show."""

    def __init__(self, app: Any) -> None:
        self.app, self.calls = app, 0

    def __call__(self, environ: Any, start_response: Any) -> Any:
        self.calls += 1
        return self.app(environ, start_response)


def test_requests_in_no_sampled_span_are_batched_yet_exact(telemetry) -> None:  # type: ignore[no-untyped-def]
    provider = TracerProvider(sampler=SlowSpansOnly())  # otel_ml's own without a trace exporter: no server span
    app = _app(provider)
    instrument_flask_app(app, telemetry.meter_provider, provider)
    client = app.test_client()
    for _ in range(37):  # no exemplar could name these: handed to the SDK in batches
        assert client.get("/items/7").status_code == 200
    for _ in range(3):
        assert client.post("/fail").status_code == 500
    ok = _key(method="GET", route="/items/<int:item>", status=200)
    failed = _key(method="POST", route="/fail", status=500, error="500")
    assert _durations(telemetry) == {ok: 37, failed: 3}  # all of them, at the collection
    # A sampled caller's trace: recorded at once, in the request's context, so the exemplar names it.
    assert client.get("/items/7", headers={"traceparent": TRACEPARENT}).status_code == 200
    points = telemetry.points_by(sc.METRIC_HTTP_SERVER_REQUEST_DURATION)
    assert points[ok].count == 38 and points[failed].count == 3
    assert [e.trace_id for e in points[ok].exemplars] == [TRACE_ID]
    assert all(not p.exemplars for key, p in points.items() if key != ok)
    client.get("/items/7")
    assert uninstrument_flask_app(app)  # what was kept reaches the SDK
    assert _durations(telemetry) == {ok: 39, failed: 3}
    provider.shutdown()
