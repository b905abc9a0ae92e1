"""A bounded buffer of recent slow-step spans, for the ``/slow-steps`` view.

With the embedded endpoint there is often no trace backend: an exemplar's
``trace_id`` would lead nowhere. This span processor keeps the last N spans
that otel_ml made *because something was slow* (they carry
``ml.slow_threshold``), so the endpoint can show them as JSON.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from otel_ml import environment_variables as ev
from otel_ml._core import semconv as sc
from otel_ml._core.options import Option, parse_int

_default: SlowStepBuffer | None = None
_default_lock = threading.Lock()

SLOW_STEP_BUFFER = Option("slow_step_buffer", ev.OTEL_ML_SLOW_STEP_BUFFER, parse_int(1, 100_000), 256)


class SlowStepBuffer(SpanProcessor):
    """Keeps the most recent ``capacity`` slow-step spans; older ones fall out.

    Args:
        capacity: How many spans to keep.

    Example:
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> buffer = SlowStepBuffer(capacity=16)
        >>> TracerProvider().add_span_processor(buffer)
    """

    def __init__(self, capacity: int = 256) -> None:
        self._spans: deque[ReadableSpan] = deque(maxlen=capacity)
        self.capacity = capacity

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        attributes = span.attributes
        if attributes is not None and sc.ML_SLOW_THRESHOLD in attributes:
            self._spans.append(span)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def spans(self, trace_id: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """The kept spans as JSON-ready dicts, newest first, optionally for one ``trace_id`` (hex)."""
        wanted = trace_id.lower() if trace_id else None
        out: list[dict[str, Any]] = []
        for span in reversed(list(self._spans)):
            ctx = span.get_span_context()
            if ctx is None:
                continue
            tid = format(ctx.trace_id, "032x")
            if wanted is not None and tid != wanted:
                continue
            out.append(_as_dict(span, tid, format(ctx.span_id, "016x")))
            if limit is not None and len(out) >= limit:
                break
        return out


def _as_dict(span: ReadableSpan, trace_id: str, span_id: str) -> dict[str, Any]:
    start, end = span.start_time or 0, span.end_time or 0
    return {
        "name": span.name,
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": format(span.parent.span_id, "016x") if span.parent else None,
        "start_time_unix_nano": start,
        "end_time_unix_nano": end,
        "duration_seconds": (end - start) / 1e9,
        "attributes": dict(span.attributes or {}),
    }


def default_slow_step_buffer() -> SlowStepBuffer:
    """The process-wide buffer that otel_ml's providers feed and the endpoint serves."""
    global _default
    with _default_lock:
        if _default is None:
            capacity = SLOW_STEP_BUFFER.resolve(None)
            _default = SlowStepBuffer(capacity)
        return _default
