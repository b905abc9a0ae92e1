"""A bounded exit: the providers otel_ml built are shut down within ``OTEL_ML_EXIT_TIMEOUT`` seconds.

The SDK shuts each provider down at exit, one after the other, and each
exporter waits out its own timeout and retries: with a collector that is down
or never answers, a finished training program took 18-23 s to exit. otel_ml
therefore builds its providers without the SDK's exit hook and registers this
one instead: both providers shut down side by side in daemon threads, the
program waits for them at most ``OTEL_ML_EXIT_TIMEOUT`` seconds, and one
WARNING line says what was not delivered. The export threads are the SDK's
own, so the training loop never waits for the collector.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from otel_ml import environment_variables as ev
from otel_ml._core.guard import guarded
from otel_ml._core.options import Option, parse_float
from otel_ml.distro._sdk_internals import already_shut_down

_LOG = logging.getLogger(__name__)

EXIT_TIMEOUT = Option("exit_timeout", ev.OTEL_ML_EXIT_TIMEOUT, parse_float(0, maximum=600), 3.0)


class Delivery(SpanProcessor):
    """Counts what otel_ml's exporters were given and what they delivered.

    Added to the tracer provider before the batch processors, it counts the
    sampled spans that ended; :meth:`track` wraps an exporter's ``export`` to
    count what reached the backend.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.span_exporters = 0  # spans that no exporter was meant to deliver are not "lost"
        self.reset()

    def reset(self) -> None:
        """Start counting afresh (a forked child counts only its own telemetry)."""
        with self._lock:
            self.spans_ended = self.spans_sent = self.metric_exports_failed = 0

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if self.span_exporters and span.context is not None and span.context.trace_flags.sampled:
            with self._lock:
                self.spans_ended += 1

    def track(self, exporter: Any, signal: str) -> Any:
        """Count the outcome of each of ``exporter``'s exports; returns ``exporter``."""
        export = exporter.export
        if signal == "traces":
            with self._lock:
                self.span_exporters += 1

        def counted(batch: Any, *args: Any, **kwargs: Any) -> Any:
            result = export(batch, *args, **kwargs)
            with self._lock:
                ok = getattr(result, "name", "") == "SUCCESS"
                if signal == "traces" and ok:
                    self.spans_sent += len(batch)
                elif signal == "metrics" and not ok:
                    self.metric_exports_failed += 1
            return result

        exporter.export = counted
        return exporter

    def not_delivered(self, final_metrics_pending: bool) -> str:
        """What did not reach the backend, in words; empty when everything did."""
        with self._lock:
            spans = self.spans_ended - self.spans_sent
            metrics = self.metric_exports_failed + (1 if final_metrics_pending else 0)
        parts = []
        if spans > 0:
            parts.append(f"{spans} span{'s' if spans != 1 else ''}")
        if metrics > 0:
            parts.append(f"{metrics} metric export{'s' if metrics != 1 else ''}")
        return " and ".join(parts)


delivery = Delivery()
_providers: list[Any] = []
_lock = threading.Lock()
_timeout: list[float] = []


def shut_down_at_exit(provider: Any) -> None:
    """Shut ``provider`` (built with ``shutdown_on_exit=False``) down at exit, within the bound."""
    with _lock:
        if not _timeout:
            # Read when the first provider is built, i.e. when instrumenting, never at import.
            _timeout.append(EXIT_TIMEOUT.resolve(None))
            atexit.register(_at_exit)
        _providers.append(provider)


def _at_exit() -> None:
    with _lock:
        providers, timeout = list(_providers), _timeout[0]
        _providers.clear()
    threads: dict[str, threading.Thread] = {}
    for provider in providers:
        if already_shut_down(provider):
            continue  # the program shut it down itself
        name = type(provider).__name__
        threads[name] = threading.Thread(
            target=guarded(f"shutting down the {name}")(provider.shutdown), name=f"otel_ml-exit-{name}", daemon=True
        )
        threads[name].start()
    deadline = time.monotonic() + timeout
    for thread in threads.values():
        thread.join(max(0.0, deadline - time.monotonic()))
    unfinished = [name for name, thread in threads.items() if thread.is_alive()]
    meter_pending = any(name.startswith("Meter") for name in unfinished)
    lost = delivery.not_delivered(meter_pending)
    if lost:
        _LOG.warning(
            "otel_ml: at exit, %s could not be delivered%s (is the collector at %s down?); "
            "OTEL_ML_EXIT_TIMEOUT=%g s bounds the wait",
            lost,
            f" within {timeout:g} s" if unfinished else "",
            _endpoint(),
            timeout,
        )


def _endpoint() -> str:
    return os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or "the OTLP endpoint"


def _after_fork_in_child() -> None:
    """A forked child counts only its own telemetry; a lock held by another thread at the fork is replaced."""
    global _lock
    _lock = threading.Lock()
    delivery._lock = threading.Lock()
    delivery.reset()


os.register_at_fork(after_in_child=_after_fork_in_child)
