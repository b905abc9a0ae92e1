"""The sampler of the tracer provider otel_ml builds when no trace exporter is configured.

With no trace exporter (the default without an OTLP endpoint), the only span
processor is the slow-step buffer behind ``/slow-steps``, which keeps only the
spans otel_ml made *because something was slow* (they carry
``ml.slow_threshold`` from their start). Recording every other span (each
Flask request, each Keras epoch, a child per inference run) would cost CPU on
every request for spans that nobody keeps, so they are not sampled: they
become the API's non-recording spans, and otel_ml adds no child span under
them. Exemplars still point at the slow spans, which are sampled.
``OTEL_TRACES_SAMPLER``, or a trace exporter, restores the SDK's default.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, get_current_span
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from otel_ml._core import semconv as sc


class SlowSpansOnly(Sampler):
    """Samples a span only when it starts with ``ml.slow_threshold`` among its attributes.

    Example:
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> provider = TracerProvider(sampler=SlowSpansOnly())
        >>> provider.get_tracer("t").start_span("request").is_recording()
        False
        >>> provider.get_tracer("t").start_span("slow", attributes={"ml.slow_threshold": 0.1}).is_recording()
        True
    """

    # Read by the instrumentation layer (which cannot import this class) to skip
    # making spans this sampler would drop: see otel_ml.serving._http.
    otel_ml_slow_spans_only = True

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if attributes and sc.ML_SLOW_THRESHOLD in attributes:
            parent = get_current_span(parent_context).get_span_context()
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, parent.trace_state if parent else None)
        return SamplingResult(Decision.DROP)

    def get_description(self) -> str:
        return "SlowSpansOnly"


def sampler_for(processors: Sequence[object]) -> Sampler | None:
    """:class:`SlowSpansOnly` when the slow-step buffer is the only processor, else the SDK's (None).

    ``OTEL_TRACES_SAMPLER`` set by the user always wins.
    """
    if os.environ.get("OTEL_TRACES_SAMPLER") or len(processors) > 1:
        return None
    return SlowSpansOnly()
