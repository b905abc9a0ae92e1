"""One ``fit`` call's telemetry: the callback otel_ml injects, and its spans.

A new :class:`FitRun` is made per ``fit``. The per-batch path
(:meth:`FitRun.on_train_batch_end`) does a fixed amount of work with
attribute dicts built once per fit: count steps and samples, record the step
time, set the batch loss, and check it. Only a *slow* step gets a span, made
after the fact with the step's true start and end, and its duration is
recorded inside that span so the histogram exemplar carries its trace id.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from otel_ml import _semconv as sc
from otel_ml._guard import guarded, report
from otel_ml._pending import FLUSH_NS, drain
from otel_ml._slow import SlowDetector
from otel_ml.keras._instruments import KerasInstruments
from otel_ml.keras._loss import BatchLoss, SpikeDetector, as_float, learning_rate
from otel_ml.keras._options import KerasOptions

_LOG = logging.getLogger(__name__)
_MAX_METRIC_NAMES = 64
_SUMMARY_SLOWEST = 3


class FitRun:
    """Telemetry state of one ``fit`` call, and the Keras callback hooks that feed it."""

    def __init__(
        self,
        model: Any,
        instruments: KerasInstruments,
        tracer: Tracer,
        options: KerasOptions,
        run_name: str,
        fit_span: Span,
    ) -> None:
        super().__init__()  # keras Callback.__init__, via the class built in _patch
        self._m = instruments
        self._tracer = tracer
        self._opts = options
        self._fit_model = model
        self.run_name = run_name
        self.fit_span = fit_span
        self._fit_ctx = trace.set_span_in_context(fit_span)
        base = {sc.ML_FRAMEWORK: sc.FRAMEWORK_KERAS, sc.ML_MODEL_NAME: str(model.name), sc.ML_RUN_NAME: run_name}
        self._attrs = base
        self._loss_attrs = {sc.PHASE_TRAIN: {**base, sc.ML_PHASE: sc.PHASE_TRAIN}}
        self._loss_attrs[sc.PHASE_VALIDATION] = {**base, sc.ML_PHASE: sc.PHASE_VALIDATION}
        self._metric_attrs: dict[tuple[str, str], dict[str, str]] = {}
        self._anomaly_attrs = {k: {**base, sc.ML_ANOMALY_KIND: k} for k in (sc.ANOMALY_NAN, sc.ANOMALY_SPIKE)}
        self._detector = SlowDetector(options.slow_step_seconds, options.slow_step_factor)
        self._spikes = SpikeDetector(options.loss_spike_window, options.loss_spike_threshold)
        self._batch_loss = BatchLoss()
        self.adapter: Any = None  # the training data adapter, captured in _patch
        self._batch_size: int | None = None
        self._num_batches: int | None = None
        self._partial: int | None = None
        self._epoch = 0
        self._epoch_span: Span | None = None
        self._epoch_ctx = self._fit_ctx
        self._epoch_t0 = 0
        self._anomaly_seen: set[str] = set()
        self._warned: set[str] = set()
        self._last_end = -1
        self._t0 = 0
        self._wall0 = 0
        self._executions = 0
        self.global_step = 0
        self.total_step_ns = 0
        self._pending_steps = 0
        self._pending_samples = 0
        self._pending_loss: float | None = None
        self._pending_durations: list[float] = []
        self._next_flush = 0
        self.slowest: list[tuple[float, int, str]] = []  # min-heap of (seconds, step, trace id)

    # --- fit lifecycle -----------------------------------------------------------------

    @guarded("keras.on_train_begin")
    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        adapter = self.adapter
        if adapter is not None:
            self._batch_size = _positive_int(getattr(adapter, "batch_size", None))
            self._num_batches = _positive_int(getattr(adapter, "num_batches", None))
            self._partial = _positive_int(getattr(adapter, "partial_batch_size", None))
        steps = _positive_int((getattr(self, "params", None) or {}).get("steps"))
        if steps is not None and steps != self._num_batches:
            # steps_per_epoch cut the epoch short: the partial batch is never reached.
            self._num_batches, self._partial = steps, None
        if self._num_batches is not None:
            self.fit_span.set_attribute(sc.ML_STEPS_PER_EPOCH, self._num_batches)
        if self._batch_size is not None:
            self.fit_span.set_attribute(sc.ML_BATCH_SIZE, self._batch_size)
        self._set_learning_rate()

    @guarded("keras.on_epoch_begin")
    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch
        self._last_end = -1
        self._batch_loss.reset()
        self._anomaly_seen.clear()
        self._epoch_span = self._tracer.start_span(
            sc.SPAN_KERAS_EPOCH, context=self._fit_ctx, attributes={sc.ML_EPOCH: epoch}
        )
        self._epoch_ctx = trace.set_span_in_context(self._epoch_span)
        self._epoch_t0 = time.perf_counter_ns()

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._wall0 = time.time_ns()
        self._t0 = time.perf_counter_ns()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        now = time.perf_counter_ns()
        try:
            self._step(batch, now - self._t0, logs)
            if now >= self._next_flush:
                self._flush(now)
        except Exception as exc:  # noqa: BLE001 - never break training
            report("keras.on_train_batch_end", exc)

    @guarded("keras.on_epoch_end")
    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        seconds = (time.perf_counter_ns() - self._epoch_t0) / 1e9
        self._flush(time.perf_counter_ns())
        m = self._m
        m.epochs.add(1, self._attrs)
        m.epoch_duration.record(seconds, self._attrs, context=self._epoch_ctx)
        span = self._epoch_span
        for key, raw in (logs or {}).items():
            value = as_float(raw)
            if value is None:
                continue
            if span is not None:
                span.set_attribute(sc.ML_LOGS_PREFIX + str(key), value)
            if math.isfinite(value):
                self._epoch_value(str(key), value)
        self._set_learning_rate()
        if span is not None:
            span.end()
        self._epoch_span = None
        self._epoch_ctx = self._fit_ctx

    def finish(self, error: BaseException | None) -> None:
        """End the spans of this fit; called by the fit wrapper, also when fit raised."""
        if self._epoch_span is not None:
            if error is not None:
                self._epoch_span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            self._epoch_span.end()
            self._epoch_span = None
        self._flush(time.perf_counter_ns())
        span = self.fit_span
        span.set_attribute(sc.ML_STEP, self.global_step)
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.end()
        self._log_summary()

    # --- per step ----------------------------------------------------------------------

    def _step(self, batch: int, elapsed_ns: int, logs: dict[str, Any] | None) -> None:
        first = self._last_end + 1
        last = batch if self._num_batches is None else min(batch, self._num_batches - 1)
        n = last - self._last_end
        self._last_end = batch
        if n <= 0:
            return
        self._pending_steps += n
        samples = self._samples(first, last, n)
        if samples:
            self._pending_samples += samples
        self.global_step += n
        self.total_step_ns += elapsed_ns
        per_step = elapsed_ns / n / 1e9
        loss = None
        if logs:
            running = logs.get("loss")
            if running is not None:
                running_f = as_float(running)
                if running_f is not None:
                    loss = self._batch_loss.update(running_f, samples or n)
        warm = self._executions < self._opts.warmup_steps
        self._executions += 1
        if not warm and self._detector.observe(per_step):
            self._slow_step(batch, n, per_step, elapsed_ns, loss, samples)
        else:
            # Fast steps are recorded at the next flush, in one tight loop:
            # the same SDK calls cost about half as much away from TF's work.
            if n == 1:
                self._pending_durations.append(per_step)
            else:
                self._pending_durations.extend((per_step,) * n)
        if loss is not None:
            if math.isfinite(loss):
                # The SDK drops non-finite gauge values with a warning each time;
                # ml.train.anomalies{nan_loss} carries them instead.
                self._pending_loss = loss
            self._check_loss(loss)

    def _flush(self, now: int) -> None:
        """Hand the accumulated steps, samples and latest batch loss to the SDK."""
        self._next_flush = now + FLUSH_NS
        m = self._m
        if self._pending_durations:
            drain(self._pending_durations, m.step_duration.record, self._attrs)
        if self._pending_steps:
            m.steps.add(self._pending_steps, self._attrs)
            self._pending_steps = 0
        if self._pending_samples:
            m.samples.add(self._pending_samples, self._attrs)
            self._pending_samples = 0
        if self._pending_loss is not None:
            m.loss.set(self._pending_loss, self._loss_attrs[sc.PHASE_TRAIN])
            self._pending_loss = None

    def _samples(self, first: int, last: int, n: int) -> int | None:
        size = self._batch_size
        if size is None:
            return None
        total = n * size
        if self._partial is not None and self._num_batches is not None and first <= self._num_batches - 1 <= last:
            total -= size - self._partial
        return total

    def _slow_step(
        self, batch: int, n: int, per_step: float, elapsed_ns: int, loss: float | None, samples: int | None
    ) -> None:
        step = self.global_step - 1  # 0-based index of the (last) step of this execution
        attributes: dict[str, Any] = {
            sc.ML_STEP: step,
            sc.ML_EPOCH: self._epoch,
            sc.ML_BATCH_INDEX: batch,
            sc.ML_STEP_DURATION: per_step,
            sc.ML_SLOW_THRESHOLD: self._detector.threshold,
            sc.ML_RUN_NAME: self.run_name,
        }
        if loss is not None:
            attributes[sc.ML_BATCH_LOSS] = loss
        if samples is not None:
            attributes[sc.ML_BATCH_SIZE] = samples // n
        if n > 1:
            attributes[sc.ML_STEPS_PER_EXECUTION] = n
        span = self._tracer.start_span(
            sc.SPAN_KERAS_TRAIN_STEP, context=self._epoch_ctx, start_time=self._wall0, attributes=attributes
        )
        ctx = trace.set_span_in_context(span)
        record = self._m.step_duration.record
        for _ in range(n):
            record(per_step, self._attrs, context=ctx)
        span.end(end_time=self._wall0 + elapsed_ns)
        trace_id = format(span.get_span_context().trace_id, "032x")
        entry = (per_step, step, trace_id)
        if len(self.slowest) < _SUMMARY_SLOWEST:
            heapq.heappush(self.slowest, entry)
        else:
            heapq.heappushpop(self.slowest, entry)

    def _check_loss(self, loss: float) -> None:
        if not math.isfinite(loss):
            self._anomaly(sc.ANOMALY_NAN, loss)
        elif self._spikes.observe(loss):
            self._anomaly(sc.ANOMALY_SPIKE, loss)

    def _anomaly(self, kind: str, loss: float) -> None:
        self._m.anomalies.add(1, self._anomaly_attrs[kind])
        if kind not in self._anomaly_seen and self._epoch_span is not None:
            # One event per kind per epoch: the counter has the full count.
            self._anomaly_seen.add(kind)
            self._epoch_span.add_event(
                "ml.anomaly", {sc.ML_ANOMALY_KIND: kind, sc.ML_STEP: self.global_step - 1, sc.ML_BATCH_LOSS: loss}
            )
        if kind not in self._warned:
            self._warned.add(kind)
            _LOG.warning(
                "otel_ml: %s at step %d of run %r (batch loss %r); counted in ml.train.anomalies, "
                "training continues. Further %s anomalies in this fit are counted, not logged.",
                kind,
                self.global_step - 1,
                self.run_name,
                loss,
                kind,
            )

    # --- epoch values ------------------------------------------------------------------

    def _epoch_value(self, key: str, value: float) -> None:
        if key == "loss" or key == "learning_rate" or key == "lr":
            if key != "loss":
                self._m.learning_rate.set(value, self._attrs)
            return
        if key == "val_loss":
            self._m.loss.set(value, self._loss_attrs[sc.PHASE_VALIDATION])
            return
        phase, name = (sc.PHASE_VALIDATION, key[4:]) if key.startswith("val_") else (sc.PHASE_TRAIN, key)
        attrs = self._metric_attrs.get((name, phase))
        if attrs is None:
            if len(self._metric_attrs) >= _MAX_METRIC_NAMES:
                return
            attrs = {**self._attrs, sc.ML_METRIC_NAME: name, sc.ML_PHASE: phase}
            self._metric_attrs[(name, phase)] = attrs
        self._m.metric.set(value, attrs)

    def _set_learning_rate(self) -> None:
        value = learning_rate(self._fit_model)
        if value is not None and math.isfinite(value):
            self._m.learning_rate.set(value, self._attrs)

    def _log_summary(self) -> None:
        if not self.global_step:
            return
        slowest = ", ".join(
            f"step {step} {seconds * 1000:.1f} ms trace_id={tid}"
            for seconds, step, tid in sorted(self.slowest, reverse=True)
        )
        _LOG.info(
            "otel_ml: run %r trained %d steps, mean step %.2f ms; slowest: %s",
            self.run_name,
            self.global_step,
            self.total_step_ns / self.global_step / 1e6,
            slowest or "none over the slow-step threshold",
        )


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None
