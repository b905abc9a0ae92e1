"""HTTP server telemetry for a Flask app at a small, fixed cost per request, in the stable HTTP conventions.

Why not opentelemetry-instrumentation-flask on a model service: on the example
service it cost about 0.7 ms of CPU per request, more than the model's run
(0.82x the prometheus-flask-exporter design's throughput), mostly whether or
not anything is sampled: attributes collected twice, the URL rebuilt for the
exclude list, a SQL-commenter context, an unsampled span with two fresh ids,
and three SDK measurements that each clean and hash their attributes.

This wrapper records the same series (``http.server.request.duration``,
``http.server.active_requests``, same attributes) with one SDK measurement
per request on a cached attribute dict (handed over in batches when no
sampled span could make it an exemplar: ``_common.Deferred``); the active requests are two
lock-free bumps read at collection, as in :mod:`otel_ml.serving._queue`. A
server span is started only when the tracer provider could sample it: under
otel_ml's own provider without a trace exporter (the distro's slow-spans-only sampler) it
never could, so no span is made, but the W3C ``traceparent`` (the global
propagator) is still extracted and made current, so spans made inside the
request (a slow run) join the caller's trace.

Time spent before the app, in the server's accept queue or behind a proxy, is
invisible to both: when the front proxy stamps the request (``X-Request-Start``
or ``X-Queue-Start``, as APM agents read them) the wait from that stamp to the
app is recorded as ``http.server.request.queue.duration`` (see
:func:`queue_seconds` for the formats).

Every attribute is bounded: the method (``_OTHER`` beyond the nine standard
ones), the scheme (``http``/``https``, else ``_OTHER``), the protocol version
(known ones only), the status code, the route (the app's own rules; none when
no rule matched) and ``error.type``. No ``Host`` header, no URL. A server span
also carries ``url.path``, as the conventions require (never the query).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Final

from opentelemetry import context, metrics, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_ml._core import semconv as sc
from otel_ml._core.buckets import DURATION_BUCKETS_SECONDS
from otel_ml._core.guard import report
from otel_ml._core.instrumentor import Patches
from otel_ml.serving._common import Callback, Deferred, Tally, exemplar_possible, live_set, meter
from otel_ml.version import __version__

_METHODS: Final = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"})
_SCHEMES: Final = frozenset({"http", "https"})
_PROTOCOLS: Final = {"HTTP/1.0": "1.0", "HTTP/1.1": "1.1", "HTTP/2": "2", "HTTP/2.0": "2", "HTTP/3": "3"}
_OTHER: Final = "_OTHER"
_MAX_CACHED: Final = 4096
# The stable conventions' advice for http.server.request.duration.
DURATION_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


_QUEUE_HEADERS: Final = ("HTTP_X_REQUEST_START", "HTTP_X_QUEUE_START")
_MAX_QUEUE_SECONDS: Final = 3600.0
_MAX_SKEW_SECONDS: Final = 1.0


def queue_seconds(value: str, now: float) -> float | None:
    """Seconds from a proxy's request-start stamp to ``now`` (epoch seconds); None when it is not one.

    The stamp is a time since the epoch in seconds, milliseconds, microseconds
    or nanoseconds (told apart by magnitude), with or without a ``t=`` prefix:
    nginx ``t=${msec}`` (seconds with a fraction), Heroku's router
    (milliseconds), Apache ``t=%t`` (microseconds). A stamp up to a second in
    the future (clocks of two hosts) counts as 0; one further ahead, more than
    an hour old, or not a number is ignored.

    Example:
        >>> queue_seconds("t=1700000000.250", now=1700000000.5)
        0.25
        >>> queue_seconds("1700000000250", now=1700000000.5), queue_seconds("t=1700000000250000", now=1700000000.5)
        (0.25, 0.25)
        >>> queue_seconds("soon", now=1700000000.5) is None
        True
    """
    text = value.strip()
    if text[:2] in ("t=", "T="):
        text = text[2:]
    try:
        stamp = float(text)
    except ValueError:
        return None
    if not 1e8 < stamp < 1e20:  # also NaN and infinities
        return None
    for scale in (1.0, 1e3, 1e6, 1e9):
        if stamp / scale < 1e11:
            waited = now - stamp / scale
            break
    if waited < -_MAX_SKEW_SECONDS or waited > _MAX_QUEUE_SECONDS:
        return None
    return round(max(waited, 0.0), 9)


class _Getter:
    """Reads propagation headers (``traceparent``) from a WSGI environ."""

    @staticmethod
    def get(environ: dict[str, Any], key: str) -> list[str] | None:
        value = environ.get("HTTP_" + key.upper().replace("-", "_"))
        return None if value is None else [value]

    @staticmethod
    def keys(environ: dict[str, Any]) -> list[str]:
        return [k[5:].lower().replace("_", "-") for k in environ if k.startswith("HTTP_")]


_GETTER: Final = _Getter()


class HttpServerTelemetry:
    """The WSGI wrapper :func:`instrument_flask_app` installs; see the module docstring for what it records."""

    def __init__(
        self,
        wsgi_app: Callable[..., Iterable[bytes]],
        route: Callable[[], str | None],
        meter_provider: metrics.MeterProvider | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self._app, self._route = wsgi_app, route
        m = meter(meter_provider)
        duration = m.create_histogram(
            sc.METRIC_HTTP_SERVER_REQUEST_DURATION,
            unit=sc.UNIT_SECONDS,
            description="Duration of HTTP server requests.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        self._record = duration.record
        self._deferred = Deferred(duration)  # the durations of requests in no sampled span: in batches
        self._record_queue = m.create_histogram(
            sc.METRIC_HTTP_SERVER_REQUEST_QUEUE_DURATION,
            unit=sc.UNIT_SECONDS,
            description="Time from the front proxy's X-Request-Start (or X-Queue-Start) stamp to the app.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS_SECONDS),
        ).record
        self._tracer_provider = tracer_provider
        self._tracer = trace.get_tracer("otel_ml.serving", __version__, tracer_provider)
        self._active: dict[tuple[str, str], tuple[Tally, Tally, dict[str, str]]] = {}
        self._attrs: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._lock = threading.Lock()

        def create(callback: Callback) -> None:
            m.create_observable_up_down_counter(
                sc.METRIC_HTTP_SERVER_ACTIVE_REQUESTS,
                callbacks=[callback],
                unit=sc.UNIT_REQUEST,
                description="Number of active HTTP server requests.",
            )

        self._live = live_set(meter_provider, sc.METRIC_HTTP_SERVER_ACTIVE_REQUESTS, create)
        self._live.add(self)
        self._enabled = True

    def disable(self) -> None:
        """Pass every request straight through and report nothing more (undone, but still in a chain)."""
        self._enabled = False
        self._live.discard(self)
        try:
            self._deferred.flush()
        except Exception as exc:  # noqa: BLE001
            report("serving.http.flush", exc)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not self._enabled:
            return self._app(environ, start_response)
        try:
            request = _Request(self, environ, start_response)
        except Exception as exc:  # noqa: BLE001 - our failure must not fail the request
            report("serving.http.start", exc)
            return self._app(environ, start_response)
        try:
            result = self._app(environ, request.start_response)
        except BaseException as exc:
            request.end(exc)
            raise
        request.end(None)
        return result

    def observe(self) -> Iterable[tuple[int, dict[str, str]]]:
        """Requests in progress per method and scheme (read at collection)."""
        for entered, left, attrs in list(self._active.values()):
            done = left.value()
            yield entered.value() - done, attrs

    def active(self, method: str, scheme: str) -> tuple[Tally, Tally, dict[str, str]]:
        """The entered/left tallies of one (method, scheme): at most 10 x 3 of them."""
        key = (method, scheme)
        found = self._active.get(key)
        if found is None:
            with self._lock:
                found = self._active.setdefault(
                    key, (Tally(), Tally(), {sc.HTTP_REQUEST_METHOD: method, sc.URL_SCHEME: scheme})
                )
        return found

    def attributes(self, key: tuple[Any, ...]) -> dict[str, Any]:
        """The duration's attribute dict for ``key`` (method, scheme, protocol, status, route, error), cached."""
        found = self._attrs.get(key)
        if found is None:
            method, scheme, protocol, status, route, error = key
            found = {sc.HTTP_REQUEST_METHOD: method, sc.URL_SCHEME: scheme}
            for name, value in (
                (sc.NETWORK_PROTOCOL_VERSION, protocol),
                (sc.HTTP_RESPONSE_STATUS_CODE, status),
                (sc.HTTP_ROUTE, route),
                (sc.ERROR_TYPE, error),
            ):
                if value is not None:
                    found[name] = value
            if len(self._attrs) < _MAX_CACHED:
                self._attrs[key] = found
        return found

    def span(self, method: str, scheme: str, environ: dict[str, Any], parent: context.Context) -> trace.Span | None:
        """A server span, or None when the provider's sampler could not keep one (otel_ml's slow-spans-only)."""
        provider = self._tracer_provider or trace.get_tracer_provider()
        if getattr(getattr(provider, "sampler", None), "otel_ml_slow_spans_only", False):
            return None
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        attributes = {sc.HTTP_REQUEST_METHOD: method, sc.URL_SCHEME: scheme, sc.URL_PATH: path or "/"}
        return self._tracer.start_span(method, context=parent, kind=SpanKind.SERVER, attributes=attributes)


class _Request:
    """One request in flight: its bounded attributes, its span (if any), its status and route once known."""

    __slots__ = (
        "_defer",
        "_entered",
        "_left",
        "_owner",
        "_span",
        "_start",
        "_start_response",
        "_token",
        "key",
        "status",
    )

    def __init__(self, owner: HttpServerTelemetry, environ: dict[str, Any], start_response: Callable[..., Any]) -> None:
        self._start = time.perf_counter()
        self._owner, self._start_response = owner, start_response
        method = environ.get("REQUEST_METHOD", "")
        method = method if method in _METHODS else _OTHER
        scheme = environ.get("wsgi.url_scheme", "http")
        scheme = scheme if scheme in _SCHEMES else _OTHER
        self.key: list[Any] = [method, scheme, _PROTOCOLS.get(environ.get("SERVER_PROTOCOL", "")), None, None, None]
        self.status = 0
        self._entered, self._left, active_attrs = owner.active(method, scheme)
        parent = propagate.extract(environ, getter=_GETTER)  # type: ignore[arg-type]
        self._span = owner.span(method, scheme, environ, parent)
        # No span of ours and no sampled caller's: no exemplar could name this request, so its duration
        # goes to the SDK in a batch (same figures, a fraction of the cost).
        self._defer = self._span is None and not exemplar_possible(parent)
        self._token = context.attach(parent if self._span is None else trace.set_span_in_context(self._span, parent))
        stamp = environ.get(_QUEUE_HEADERS[0]) or environ.get(_QUEUE_HEADERS[1])
        if stamp is not None:  # in the request's context: the exemplar names its trace
            try:
                waited = queue_seconds(stamp, time.time())
                if waited is not None:
                    owner._record_queue(waited, active_attrs)
            except Exception as exc:  # noqa: BLE001 - after the attach: nothing may leave it attached
                report("serving.http.queue", exc)
        self._entered.bump()  # these two last: nothing above can leave either without its end

    def start_response(self, status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
        """The app's ``start_response``, called inside its request context: status and route are known here."""
        try:
            self.status = int(status[:3])
            self.key[4] = self._owner._route()
        except Exception as exc:  # noqa: BLE001
            report("serving.http.start_response", exc)
        return self._start_response(status, headers, *args)

    def end(self, exc: BaseException | None) -> None:
        """Record the duration (in the request's context, for the exemplar), end the span, detach."""
        try:
            elapsed = time.perf_counter() - self._start
            key = self.key
            if exc is not None:  # no response: the server answers 500
                key[3], key[5] = 500, type(exc).__qualname__
            elif self.status:  # else start_response was not called (yet): no status to record
                key[3] = self.status
                key[5] = str(self.status) if self.status >= 500 else None
            owner = self._owner
            cache_key = tuple(key)
            attrs = owner.attributes(cache_key)
            if self._defer and owner._attrs.get(cache_key) is attrs:  # batches group by the cached dicts
                owner._deferred.add(elapsed, attrs)
            else:
                owner._record(elapsed, attrs)
            span = self._span
            if span is not None:
                self._end_span(span, attrs, exc)
        except Exception as err:  # noqa: BLE001
            report("serving.http.end", err)
        finally:
            self._left.bump()
            context.detach(self._token)

    def _end_span(self, span: trace.Span, attrs: dict[str, Any], exc: BaseException | None) -> None:
        route = attrs.get(sc.HTTP_ROUTE)
        if route is not None:
            span.update_name(f"{attrs[sc.HTTP_REQUEST_METHOD]} {route}")
        span.set_attributes(attrs)
        if exc is not None:
            span.record_exception(exc)
        if sc.ERROR_TYPE in attrs:
            span.set_status(Status(StatusCode.ERROR, attrs[sc.ERROR_TYPE]))
        span.end()


def _flask_route() -> str | None:
    from flask import request

    rule = request.url_rule
    return None if rule is None else rule.rule


def instrument_flask_app(
    app: Any, meter_provider: metrics.MeterProvider | None = None, tracer_provider: trace.TracerProvider | None = None
) -> bool:
    """Record ``http.server.*`` for a Flask app (stable conventions), and its server spans when sampled.

    The app's ``wsgi_app`` is wrapped through otel_ml's one patch record
    (:class:`~otel_ml._core.instrumentor.Patches`), so that
    :func:`uninstrument_flask_app` puts back exactly what was there. Returns
    False, changing nothing, when the app is already instrumented, by this
    function or by opentelemetry-instrumentation-flask (for example under
    ``opentelemetry-instrument``): the series would be counted twice.

    Example:
        >>> from flask import Flask
        >>> app = Flask("demo")
        >>> instrument_flask_app(app), instrument_flask_app(app)
        (True, False)
        >>> uninstrument_flask_app(app), uninstrument_flask_app(app)
        (True, False)
    """
    with _apps_lock:
        # The contrib Flask instrumentation marks an app it instrumented with this attribute and
        # offers no public way to ask; read with a default, so that if it ever goes, the only cost
        # is the double counting this check exists to avoid (tests/test_serving_http.py checks it).
        if app in _apps or getattr(app, "_is_instrumented_by_opentelemetry", False):
            return False
        patches = _apps[app] = Patches()
    patches.patch(
        app,
        "wsgi_app",
        lambda original: HttpServerTelemetry(original, _flask_route, meter_provider, tracer_provider),
        inherited=True,
    )
    return True


def uninstrument_flask_app(app: Any) -> bool:
    """Undo :func:`instrument_flask_app`: the app's ``wsgi_app`` is exactly what it was before.

    Returns False, changing nothing, when this function did not instrument
    the app (or has undone it already). A ``wsgi_app`` wrapped again by
    someone else since (``app.wsgi_app = ProxyFix(app.wsgi_app)``) is left as
    it is, and otel_ml's wrapper inside it passes every request straight
    through and records nothing more.

    Example:
        >>> from flask import Flask
        >>> app = Flask("demo")
        >>> instrument_flask_app(app)
        True
        >>> uninstrument_flask_app(app), "wsgi_app" in vars(app)
        (True, False)
    """
    with _apps_lock:
        patches = _apps.pop(app, None)
    if patches is None:
        return False
    for stranded in patches.restore():
        if isinstance(stranded, HttpServerTelemetry):
            stranded.disable()
    return True


_apps: weakref.WeakKeyDictionary[Any, Patches] = weakref.WeakKeyDictionary()
"""The apps :func:`instrument_flask_app` wrapped, with what it replaced (the app itself is left unmarked)."""
_apps_lock = threading.Lock()
