"""A bounded exit: the providers otel_ml built are shut down within ``OTEL_ML_EXIT_TIMEOUT`` seconds.

The SDK shuts each provider down at exit, one after the other, and each
exporter waits out its own timeout and retries: with a collector that is down
or never answers, a finished training program took 18-23 s to exit. otel_ml
therefore builds its providers without the SDK's exit hook and registers this
one instead: both providers shut down side by side in daemon threads, the
program waits for them at most ``OTEL_ML_EXIT_TIMEOUT`` seconds, and one
WARNING line says what was not delivered. The export threads are the SDK's
own, so the training loop never waits for the collector.

SIGTERM (how Kubernetes, Slurm and every job runner stop a job) runs no exit
hook by default: the process dies with whatever the push exporters had not
sent yet (up to a whole export interval). So when otel_ml built a push
exporter (OTLP, console), SIGTERM first flushes both providers, bounded by the
same ``OTEL_ML_EXIT_TIMEOUT``, then does exactly what the program asked for:

- nothing asked (the default): the default is restored and the signal raised
  again, so the process dies by SIGTERM, as it would have without otel_ml;
- a handler the program installed, before or after ``instrument()``: it is
  called after the flush (``signal.signal`` and ``signal.getsignal`` still
  set and return the program's own handler);
- ignored (``SIG_IGN``): otel_ml installs nothing, and the signal stays ignored.

The flush runs where Python runs signal handlers, in the main thread between
two bytecodes: in ``fit`` that is at once (between steps).
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import time
from types import FrameType
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from otel_ml import environment_variables as ev
from otel_ml._core.guard import guarded
from otel_ml._core.options import Option, parse_float
from otel_ml._core.pending import hand_over_now
from otel_ml.distro._redact import redact
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
        self.exporters = 0  # push exporters of either signal (what a SIGTERM flush is for)
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
        with self._lock:
            self.exporters += 1
            if signal == "traces":
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
    if delivery.exporters:
        install_sigterm_flush()


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
    """The OTLP endpoint as a log line may show it: without user info or other credentials."""
    return redact(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()) or "the OTLP endpoint"


def flush(reason: str) -> None:
    """Export what the providers otel_ml built hold, waiting at most ``OTEL_ML_EXIT_TIMEOUT``."""
    with _lock:
        providers, timeout = list(_providers), (_timeout[0] if _timeout else EXIT_TIMEOUT.default)
    threads: list[threading.Thread] = []
    for provider in providers:
        if already_shut_down(provider):
            continue
        name = type(provider).__name__
        flush_one = guarded(f"flushing the {name} on {reason}")(provider.force_flush)
        thread = threading.Thread(
            target=flush_one, kwargs={"timeout_millis": int(timeout * 1000)}, name=f"otel_ml-flush-{name}", daemon=True
        )
        thread.start()
        threads.append(thread)
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        _LOG.warning(
            "otel_ml: on %s, the export did not finish within %g s (is the collector at %s down?); "
            "OTEL_ML_EXIT_TIMEOUT=%g s bounds the wait",
            reason,
            timeout,
            _endpoint(),
            timeout,
        )


# --- SIGTERM: flush, then what the program asked for ---------------------------------------

_TERM = signal.SIGTERM
_signal = signal.signal
_getsignal = signal.getsignal
_asked: dict[int, Any] = {}  # what the program set for SIGTERM (returned by signal.getsignal)
_flushing = threading.Event()


def install_sigterm_flush() -> None:
    """Flush on SIGTERM, then do what the program asked; idempotent, main thread only."""
    if _TERM in _asked:
        return
    if threading.current_thread() is not threading.main_thread():
        _LOG.debug("otel_ml: instrumented outside the main thread: SIGTERM does not flush the exporters")
        return
    current = _getsignal(_TERM)
    if current is signal.SIG_IGN or current is None:
        return  # ignored (kept ignored, also across exec) or a handler not set from Python: left alone
    _asked[_TERM] = current
    _signal(_TERM, _on_sigterm)
    signal.signal = _program_sets  # type: ignore[assignment]
    signal.getsignal = _program_reads  # type: ignore[assignment]


def _flush_on_sigterm() -> None:
    """Hand over and export, on a helper thread joined against the exit bound.

    Not on the thread the signal interrupted: it may be stopped inside the
    SDK, holding a lock the hand-over needs; waiting for it there would never
    end. Past the bound the process goes on to its end without the export.
    """

    def work() -> None:
        try:
            hand_over_now()  # what a fit buffered since its last hand-over (at most 100 ms of steps)
            flush("SIGTERM")
        except Exception as exc:  # noqa: BLE001 - the program's own handling must still happen
            _LOG.debug("otel_ml: flushing on SIGTERM failed: %s", exc)

    with _lock:
        timeout = _timeout[0] if _timeout else EXIT_TIMEOUT.default
    thread = threading.Thread(target=work, name="otel_ml-sigterm-flush", daemon=True)
    thread.start()
    thread.join(timeout + 0.5)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    asked = _asked.get(signum, signal.SIG_DFL)
    if not _flushing.is_set():  # a second SIGTERM during the flush goes straight on
        _flushing.set()
        try:
            _flush_on_sigterm()
        finally:
            _flushing.clear()
    if asked is signal.SIG_DFL or asked is None:
        _signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)  # dies by SIGTERM, exactly as without otel_ml
        _signal(signum, _on_sigterm)  # only reached where the signal is blocked: keep flushing next time
    elif callable(asked):
        asked(signum, frame)


def _program_sets(signalnum: Any, handler: Any) -> Any:
    """``signal.signal``: for SIGTERM, the program's handler is called after otel_ml's flush."""
    if signalnum != _TERM or _TERM not in _asked or threading.current_thread() is not threading.main_thread():
        return _signal(signalnum, handler)
    if handler is signal.SIG_IGN:
        _signal(signalnum, handler)
    elif handler is signal.SIG_DFL or callable(handler):
        _signal(signalnum, _on_sigterm)
    else:
        return _signal(signalnum, handler)  # the TypeError the program would get
    previous, _asked[_TERM] = _asked[_TERM], handler
    return previous


def _program_reads(signalnum: Any) -> Any:
    """``signal.getsignal``: SIGTERM's handler as the program set it (not otel_ml's)."""
    current = _getsignal(signalnum)
    if current is _on_sigterm:
        return _asked.get(signalnum, signal.SIG_DFL)
    return current


def _after_fork_in_child() -> None:
    """A forked child counts only its own telemetry; a lock held by another thread at the fork is replaced."""
    global _lock
    _lock = threading.Lock()
    delivery._lock = threading.Lock()
    delivery.reset()


os.register_at_fork(after_in_child=_after_fork_in_child)
