"""The standard ``OTEL_*`` variables that otel_ml's SDK set-up passes on, validated where read.

The SDK and the OTLP exporters read these themselves and raise on a bad value
(``OTEL_EXPORTER_OTLP_TIMEOUT=abc``, ``OTEL_BSP_MAX_QUEUE_SIZE=abc``,
``OTEL_ATTRIBUTE_COUNT_LIMIT=abc``, ``OTEL_EXPORTER_OTLP_PROTOCOL=bogus``),
which would stop ``otel_ml.instrument()`` or, under ``opentelemetry-instrument``,
switch all telemetry off. Here each one is read through otel_ml's one resolver,
with bounds: a bad or absurd value is one ERROR line and the SDK's default,
which is then passed to the constructor explicitly, so the SDK does not read
the variable again. A variable that is unset is not passed at all, and the
SDK's own defaults and fallbacks apply.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from opentelemetry.sdk.trace import SpanLimits

from otel_ml._core.options import env_value, parse_choice, parse_float, parse_int

_Signal = Literal["traces", "metrics"]


@dataclass(frozen=True)
class Passed:
    """A standard variable and the constructor keyword it becomes."""

    argument: str
    variable: str
    parse: Callable[[object], Any]
    default: Any


def explicit(rows: Iterable[Passed]) -> dict[str, Any]:
    """Keywords for the rows whose variable is set; the first set row wins for each keyword.

    Example:
        >>> explicit([Passed("max_queue_size", "OTEL_NOT_SET_ANYWHERE", parse_int(1), 2048)])
        {}
    """
    found: dict[str, Any] = {}
    for row in rows:
        raw = os.environ.get(row.variable, "")
        if row.argument in found or not raw.strip():
            continue
        # Both signals read the general OTLP variables: one ERROR line per bad value, not two.
        key = (row.variable, raw, row.default)
        if key not in _read:
            _read[key] = env_value(row.variable, row.parse, row.default)
        found[row.argument] = _read[key]
    return found


_read: dict[tuple[str, str, Any], Any] = {}


def forget() -> None:
    """Read every variable afresh (one set-up pass logs each bad value once)."""
    _read.clear()


_COUNT = parse_int(0, 1_000_000)
_LENGTH = parse_int(0, 100_000_000)


def span_limits() -> SpanLimits:
    """``SpanLimits`` from the ``OTEL_*_LIMIT`` variables; the SDK raises on a bad one."""
    rows = [
        Passed("max_attributes", "OTEL_ATTRIBUTE_COUNT_LIMIT", _COUNT, 128),
        Passed("max_span_attributes", "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", _COUNT, 128),
        Passed("max_event_attributes", "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", _COUNT, 128),
        Passed("max_link_attributes", "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT", _COUNT, 128),
        Passed("max_events", "OTEL_SPAN_EVENT_COUNT_LIMIT", _COUNT, 128),
        Passed("max_links", "OTEL_SPAN_LINK_COUNT_LIMIT", _COUNT, 128),
        # UNSET is the SDK's "no limit", its default for lengths.
        Passed("max_attribute_length", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", _LENGTH, SpanLimits.UNSET),
        Passed("max_span_attribute_length", "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", _LENGTH, SpanLimits.UNSET),
    ]
    return SpanLimits(**explicit(rows))


def batch_span_processor() -> dict[str, Any]:
    """Keywords of ``BatchSpanProcessor`` from ``OTEL_BSP_*``; the batch never exceeds the queue."""
    found = explicit(
        [
            Passed("max_queue_size", "OTEL_BSP_MAX_QUEUE_SIZE", parse_int(1, 1_000_000), 2048),
            Passed("schedule_delay_millis", "OTEL_BSP_SCHEDULE_DELAY", parse_float(0, above=True, maximum=3.6e6), 5000),
            Passed("max_export_batch_size", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", parse_int(1, 1_000_000), 512),
            Passed("export_timeout_millis", "OTEL_BSP_EXPORT_TIMEOUT", parse_float(0, above=True, maximum=6e5), 30000),
        ]
    )
    queue = found.get("max_queue_size", 2048)
    if found.get("max_export_batch_size", 512) > queue:
        found["max_export_batch_size"] = queue  # the SDK raises otherwise; the queue bounds memory
    return found


def periodic_reader() -> dict[str, Any]:
    """Keywords of ``PeriodicExportingMetricReader`` from ``OTEL_METRIC_EXPORT_*``."""
    return explicit(
        [
            Passed(
                "export_interval_millis",
                "OTEL_METRIC_EXPORT_INTERVAL",
                parse_float(0, above=True, maximum=8.64e7),
                60000,
            ),
            Passed(
                "export_timeout_millis", "OTEL_METRIC_EXPORT_TIMEOUT", parse_float(0, above=True, maximum=3.6e6), 30000
            ),
        ]
    )


def meter_provider() -> dict[str, Any]:
    """Keywords of ``MeterProvider`` from ``OTEL_METRICS_EXEMPLAR_FILTER``."""
    from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, AlwaysOnExemplarFilter, TraceBasedExemplarFilter

    filters = {"trace_based": TraceBasedExemplarFilter, "always_on": AlwaysOnExemplarFilter}
    filters["always_off"] = AlwaysOffExemplarFilter
    row = Passed("exemplar_filter", "OTEL_METRICS_EXEMPLAR_FILTER", parse_choice(*filters), "trace_based")
    return {name: filters[value]() for name, value in explicit([row]).items()}


_PROTOCOLS = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}
_COMPRESSION_MEMBERS = {"gzip": "Gzip", "deflate": "Deflate", "none": "NoCompression"}


def otlp_entry_point(signal: _Signal) -> str:
    """The exporter entry point that ``otlp`` means, from ``OTEL_EXPORTER_OTLP_[SIGNAL_]PROTOCOL``."""
    rows = [
        Passed("protocol", f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL", parse_choice(*_PROTOCOLS), "grpc"),
        Passed("protocol", "OTEL_EXPORTER_OTLP_PROTOCOL", parse_choice(*_PROTOCOLS), "grpc"),
    ]
    return _PROTOCOLS[explicit(rows).get("protocol", "grpc")]


def otlp_exporter(cls: type, signal: _Signal) -> dict[str, Any]:
    """Timeout and compression keywords for an OTLP exporter class (others get none)."""
    module = cls.__module__
    if not module.startswith("opentelemetry.exporter.otlp.proto."):
        return {}
    sig = signal.upper()
    timeout = parse_float(0, above=True, maximum=600)
    choice = parse_choice(*_COMPRESSION_MEMBERS)
    found = explicit(
        [
            Passed("timeout", f"OTEL_EXPORTER_OTLP_{sig}_TIMEOUT", timeout, 10.0),
            Passed("timeout", "OTEL_EXPORTER_OTLP_TIMEOUT", timeout, 10.0),
            Passed("compression", f"OTEL_EXPORTER_OTLP_{sig}_COMPRESSION", choice, "none"),
            Passed("compression", "OTEL_EXPORTER_OTLP_COMPRESSION", choice, "none"),
        ]
    )
    if "compression" in found:
        if ".grpc" in module:
            from grpc import Compression
        else:
            from opentelemetry.exporter.otlp.proto.http import Compression  # type: ignore[assignment]
        found["compression"] = getattr(Compression, _COMPRESSION_MEMBERS[found["compression"]])
    return found


SEMCONV_OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"
DEFAULT_SEMCONV_OPT_IN = "http"


def default_http_semconv(environ: dict[str, str] | os._Environ[str] | None = None) -> None:
    """Choose the stable HTTP semantic conventions unless the user chose.

    The old conventions label server metrics with the request's ``Host``
    header (and more), so any client can add series without limit; the stable
    ones keep method, route, status, scheme and protocol version only. The
    HTTP instrumentations read the variable once per process, when the first
    of them is applied; the configurator and ``otel_ml.instrument()`` run
    before that in the usual set-ups (``opentelemetry-instrument``, or
    ``otel_ml.instrument()`` before the Flask app is instrumented).
    """
    env = os.environ if environ is None else environ
    env.setdefault(SEMCONV_OPT_IN, DEFAULT_SEMCONV_OPT_IN)
