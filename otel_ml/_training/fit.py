"""One ``fit`` call's telemetry: the callback otel_ml injects, with its spans, slow steps and anomalies.

A new :class:`FitRun` is made per ``fit``, for every Keras flavour; it wires
Keras's hooks to the rest of this package and asks its
:class:`~otel_ml._training.flavour.Flavour` where Keras 3 and Keras 2 differ.
The per-batch path (:meth:`FitRun.on_train_batch_end`) does a fixed amount of
work with attribute dicts built once per fit. Every hook does each of its
jobs under its own guard, so that one failing job (an odd log value, a
raising span processor) costs that job alone.

What one fit reports besides the per-step counts (:mod:`.steps`) and the
batch loss (:mod:`.loss`) lives here too:

- :class:`RunSpans`: the fit span and the current epoch span. Starting or
  ending a span runs the user's span processors, which may raise: that must
  cost the span, never the run's metrics, so every span operation is guarded
  on its own and a failed start yields a non-recording span.
- :class:`SlowSteps`: only a *slow* step gets a span, made after the fact with
  the step's true start and end; its duration is recorded inside that span so
  that the histogram exemplar carries its trace id. The three slowest are
  named, with their trace ids, in the one INFO line logged when the run ends.
- :class:`LossWatch`: non-finite and spiking batch losses, counted, one span
  event per epoch, one log line per fit.
- :class:`EpochValues`: the values logged at epoch end (validation loss and
  every other metric, bounded), on gauges and on the epoch span.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import Counter, Histogram
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from otel_ml._core import semconv as sc
from otel_ml._core.cardinality import LabelBound
from otel_ml._core.guard import guarded, report
from otel_ml._core.pending import hand_over_on_demand
from otel_ml._core.slow import SlowDetector
from otel_ml._training.flavour import Flavour, as_float, positive_int, read_attribute
from otel_ml._training.instruments import TrainingInstruments
from otel_ml._training.loss import Loss, LossReader, SpikeDetector
from otel_ml._training.optimizers import Optimizers
from otel_ml._training.options import TrainingOptions
from otel_ml._training.steps import BatchIndex, PendingSteps

_LOG = logging.getLogger(__name__)
_SUMMARY_SLOWEST = 3
_MAX_METRIC_NAMES = 64  # bounds ml.metric.name per run
_SKIPPED = frozenset({"loss", "learning_rate", "lr"})  # the batch loss and the optimizers' own reads cover these


class FitRun:
    """Telemetry state of one ``fit`` call, and the Keras callback hooks that feed it."""

    label_bound: tuple[LabelBound, tuple[str, str]]  # set by the wrapper: told when the fit ends

    def __init__(
        self,
        model: Any,
        instruments: TrainingInstruments,
        tracer: Tracer,
        options: TrainingOptions,
        run_name: str,
        fit_span: Span,
        flavour: Flavour,
        labels: tuple[str, str] | None = None,
    ) -> None:
        super().__init__()  # the flavour's Callback.__init__, via the class built in .wrappers
        for name, value in flavour.callback_attributes.items():
            setattr(self, name, value)  # after Callback.__init__, which sets some of them itself
        self._m = instruments
        self._fit_model = model
        self._flavour = flavour
        self.run_name = run_name
        # The series' (model, run) label values, bounded per process (otel_ml._core.cardinality).
        model_label, run_label = labels if labels is not None else (str(model.name), run_name)
        attrs = {sc.ML_FRAMEWORK: flavour.framework, sc.ML_MODEL_NAME: model_label, sc.ML_RUN_NAME: run_label}
        self._attrs = attrs
        self.spans = RunSpans(tracer, fit_span)
        self._pending = PendingSteps(instruments, attrs, {**attrs, sc.ML_PHASE: sc.PHASE_TRAIN})
        self._index = BatchIndex()
        self._values = EpochValues(instruments, attrs)
        detector = SlowDetector(options.slow_step_seconds, options.slow_step_factor)
        self._slow = SlowSteps(tracer, instruments.step_duration, attrs, run_name, detector, options.warmup_steps)
        spikes = SpikeDetector(options.loss_spike_window, options.loss_spike_threshold)
        self._watch = LossWatch(instruments.anomalies, attrs, spikes, self.spans, run_name)
        self._loss: LossReader | None = None
        self._optimizers: Optimizers | None = None
        self._read = flavour.read_scalar  # replaced at fit start by the flavour's reader for this model
        hand_over_on_demand(self)  # SIGTERM mid-fit: the steps since the last flush still reach the SDK
        self._exact_steps = False  # read the optimizers' steps: executions of unknown length
        self._learn_length = True  # take the batches per epoch from the data once it knows them (Keras 2)
        self._settle_from = -1  # from this batch index on, the loss weights are read at each execution
        self._spe = 1  # the model's steps_per_execution
        self._full = 0.0  # the largest weight per step seen: a full batch
        self.adapter: Any = None  # the training data adapter (Keras 2: DataHandler), captured in .wrappers
        self.global_step = 0
        self.total_step_ns = 0
        self._epoch = 0
        self._epochs_run = 0
        self._epoch_t0 = 0
        self._wall0 = 0
        self._t0 = 0

    def model_is(self, model: Any) -> bool:
        """Whether this fit trains ``model`` (a fit of the same model inside it is Keras's own, not another run)."""
        return model is self._fit_model

    # --- fit lifecycle -----------------------------------------------------------------

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._read_data()
        self._find_optimizers()
        self._find_loss()

    @guarded("keras.on_train_begin data")
    def _read_data(self) -> None:
        size = num = partial = None
        if self.adapter is not None:
            size, num, partial = (positive_int(value) for value in self._flavour.read_data(self.adapter))
        steps = positive_int((read_attribute(self, "params") or {}).get("steps"))
        self._spe = positive_int(read_attribute(self._fit_model, "steps_per_execution")) or 1
        cycle = None
        if steps is not None and steps != num:
            # steps_per_epoch is not one pass over the data: the short batch comes where the data runs out.
            cycle, num = num, steps
            if cycle is None:
                partial = None
        declared, length = size, num
        if cycle is not None and self._spe > 1 and not self._flavour.repeats_data:
            # Keras 3 ends an execution early where the data runs out, short of the index it reports: as for
            # data of unknown length, steps are read from the optimizers, samples left to the loss Mean's count.
            size = partial = cycle = length = None
            self._learn_length = False
        self._index.declare(size, length, partial, cycle)
        self._know_length(length)
        if num is not None:
            self.spans.fit.set_attribute(sc.ML_STEPS_PER_EPOCH, num)
        if declared is not None:
            self.spans.fit.set_attribute(sc.ML_BATCH_SIZE, declared)

    def _know_length(self, num: int | None) -> None:
        self._exact_steps = self._spe > 1 and num is None
        self._settle_from = num - 1 - self._spe if num is not None else 1 << 62

    @guarded("keras.on_train_begin optimizers")
    def _find_optimizers(self) -> None:
        self._read = self._flavour.reader(self._fit_model)
        self._optimizers = Optimizers(self._fit_model, self._read)

    @guarded("keras.on_train_begin loss")
    def _find_loss(self) -> None:
        self._loss = LossReader(self._fit_model, self._index.batch_size is not None, self._flavour, self._read)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch
        self._epoch_t0 = time.perf_counter_ns()
        if not self._epochs_run:
            # The first epoch that runs: initial_epoch=, or where BackupAndRestore resumed.
            guarded("keras.on_epoch_begin start")(self.spans.fit.set_attribute)(sc.ML_EPOCH_START, epoch)
        self._epochs_run += 1
        self._new_epoch()
        guarded("keras.on_epoch_begin span")(self.spans.start_epoch)(epoch)

    @guarded("keras.on_epoch_begin counts")
    def _new_epoch(self) -> None:
        self._index.new_epoch()
        if self._index.num_batches is None and self._learn_length and self.adapter is not None:
            # Keras 2's DataHandler learns the length of data of unknown cardinality in its first epoch.
            num = positive_int(self._flavour.read_data(self.adapter)[1])
            if num is not None:
                self._index.num_batches = num
                self._know_length(num)
        if self._loss is not None:
            self._loss.new_epoch()

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._wall0 = time.time_ns()
        self._t0 = time.perf_counter_ns()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        now = time.perf_counter_ns()
        try:
            due = now >= self._pending.next_flush
            self._step(batch, now - self._t0, logs, due or batch >= self._settle_from)
            if due:
                self._pending.flush(now)
        except Exception as exc:  # noqa: BLE001 - never break training
            report("keras.on_train_batch_end", exc)

    @guarded("keras.on_test_begin")
    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Validation inside fit resets Keras's metrics: read the training loss weights first."""
        self._settle()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        seconds = (time.perf_counter_ns() - self._epoch_t0) / 1e9
        guarded("keras.on_epoch_end loss")(self._settle)()
        self._flush()
        self._count_epoch(seconds)
        self._values.record(logs, self.spans.epoch)
        self._learning_rates()
        guarded("keras.on_epoch_end span")(self.spans.end_epoch)()

    @guarded("keras.on_epoch_end flush")
    def _flush(self) -> None:
        self._pending.flush(time.perf_counter_ns())

    def hand_over(self) -> None:
        """Hand the pending steps to the SDK now (:func:`otel_ml._core.pending.hand_over_now`)."""
        self._flush()

    @guarded("keras.on_epoch_end epoch")
    def _count_epoch(self, seconds: float) -> None:
        self._m.epochs.add(1, self._attrs)
        self._m.epoch_duration.record(seconds, self._attrs, context=self.spans.epoch_ctx)

    @guarded("keras.on_epoch_end learning rate")
    def _learning_rates(self) -> None:
        for name, value in self._optimizers.learning_rates() if self._optimizers is not None else ():
            if math.isfinite(value):
                self._m.learning_rate.set(value, {**self._attrs, sc.ML_OPTIMIZER_NAME: name})

    def finish(self, error: BaseException | None) -> None:
        """End the spans of this fit; called by the fit wrapper, also when fit raised."""
        guarded("keras.fit end loss")(self._settle)(error is not None)  # after a raise, losses kept unread
        self._flush()
        guarded("keras.fit end spans")(self.spans.finish)(self.global_step, self._epochs_run, error)
        guarded("keras.fit summary")(self._slow.log_summary)(self.global_step, self.total_step_ns)

    # --- per step ----------------------------------------------------------------------

    def _step(self, batch: int, elapsed_ns: int, logs: dict[str, Any] | None, settle: bool) -> None:
        n, samples = self._index.advance(batch)
        if n <= 0:
            return
        if self._exact_steps and self._optimizers is not None:
            # The last execution of data of unknown length may hold fewer steps than Keras's index says.
            taken = self._optimizers.advanced()
            if taken is not None and 0 < taken < n:
                n = taken
        self.global_step += n
        self.total_step_ns += elapsed_ns
        per_step = elapsed_ns / n / 1e9
        slow = self._slow.is_slow(per_step)
        losses: Sequence[Loss] = ()
        reader = self._loss
        if logs and reader is not None:
            losses = reader.step(logs, n, samples, self.global_step - 1, settle or slow)  # a slow span has its loss
            if reader.counted:
                self._pending.samples += reader.counted
                reader.counted = 0
        if slow:
            self._pending.add(n, samples, None)
            loss = losses[-1][1] if losses and losses[-1][0] == self.global_step - 1 else None
            self._slow.record(
                self.spans.epoch_ctx, self._wall0, elapsed_ns, n, self._slow_attributes(batch, n, loss, samples)
            )
        else:
            # Fast steps are recorded at the next flush, in one tight loop.
            self._pending.add(n, samples, per_step)
        if losses:
            self._take(losses)

    def _settle(self, ending: bool = False) -> None:
        reader = self._loss
        if reader is not None:
            losses = reader.settle(ending)
            self._pending.samples += reader.counted
            reader.counted = 0
            self._take(losses)

    def _take(self, losses: Sequence[Loss]) -> None:
        """Check each batch loss in step order; the gauge gets the last finite one."""
        for step, loss, weight in losses:
            if math.isfinite(loss):
                # The SDK drops non-finite gauge values with a warning each time;
                # ml.train.anomalies{nan_loss} carries them instead.
                self._pending.loss = loss
            if weight > self._full:
                self._full = weight
            self._watch.check(loss, step, weight >= self._full)

    def _slow_attributes(self, batch: int, n: int, loss: float | None, samples: int | None) -> dict[str, Any]:
        step, epoch = self.global_step - 1, self._epoch
        attributes: dict[str, Any] = {sc.ML_STEP: step, sc.ML_EPOCH: epoch, sc.ML_BATCH_INDEX: batch}
        if loss is not None:
            attributes[sc.ML_BATCH_LOSS] = loss
        if samples is not None:
            attributes[sc.ML_BATCH_SIZE] = samples // n
        return attributes


# --- spans ------------------------------------------------------------------------------


def start_span(tracer: Tracer, name: str, **kwargs: Any) -> Span:
    """``tracer.start_span``, or the invalid (non-recording) span when a processor raises."""
    try:
        return tracer.start_span(name, **kwargs)
    except Exception as exc:  # noqa: BLE001 - a span processor is not ours to trust
        report(f"starting span {name}", exc)
        return trace.INVALID_SPAN


def end_span(span: Span, error: BaseException | None = None, end_time: int | None = None) -> None:
    """Mark ``error`` on ``span`` (when given) and end it; a raising processor is reported."""
    try:
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.end(end_time=end_time)
    except Exception as exc:  # noqa: BLE001
        report("ending a span", exc)


class RunSpans:
    """The fit span and the current epoch span, with the contexts that parent what happens in them."""

    __slots__ = ("_events", "_tracer", "epoch", "epoch_ctx", "fit", "fit_ctx")

    def __init__(self, tracer: Tracer, fit: Span) -> None:
        self._tracer = tracer
        self.fit = fit
        self.fit_ctx: Context = trace.set_span_in_context(fit)
        self.epoch: Span | None = None
        self.epoch_ctx = self.fit_ctx
        self._events: set[str] = set()

    def start_epoch(self, epoch: int) -> None:
        self.end_epoch()  # an epoch left open (its end hook failed) ends here
        self._events.clear()
        self.epoch = start_span(
            self._tracer, sc.SPAN_KERAS_EPOCH, context=self.fit_ctx, attributes={sc.ML_EPOCH: epoch}
        )
        self.epoch_ctx = trace.set_span_in_context(self.epoch)

    def end_epoch(self, error: BaseException | None = None) -> None:
        span, self.epoch, self.epoch_ctx = self.epoch, None, self.fit_ctx
        if span is not None:
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            end_span(span)

    def event_once(self, kind: str, attributes: dict[str, Any]) -> None:
        """One ``ml.anomaly`` event per kind per epoch: the counter has the full count."""
        if kind not in self._events and self.epoch is not None:
            self._events.add(kind)
            self.epoch.add_event(sc.EVENT_ML_ANOMALY, attributes)

    def finish(self, steps: int, epochs: int, error: BaseException | None) -> None:
        self.end_epoch(error)
        try:
            self.fit.set_attribute(sc.ML_STEP, steps)
            self.fit.set_attribute(sc.ML_EPOCHS, epochs)
        finally:
            end_span(self.fit, error)


# --- slow steps -------------------------------------------------------------------------


class SlowSteps:
    """Decides which executions are slow, records them under a span, and keeps the slowest three."""

    __slots__ = ("_attrs", "_detector", "_executions", "_histogram", "_run_name", "_tracer", "_warmup", "slowest")

    def __init__(
        self,
        tracer: Tracer,
        histogram: Histogram,
        attrs: dict[str, Any],
        run_name: str,
        detector: SlowDetector,
        warmup: int,
    ) -> None:
        self._tracer = tracer
        self._histogram = histogram
        self._attrs = attrs
        self._run_name = run_name
        self._detector = detector
        self._warmup = warmup
        self._executions = 0
        self.slowest: list[tuple[float, int, str]] = []  # min-heap of (seconds, step, trace id)

    def is_slow(self, per_step: float) -> bool:
        """Whether this execution's per-step time is slow (never during warm-up)."""
        warm = self._executions < self._warmup
        self._executions += 1
        return not warm and self._detector.observe(per_step)

    def record(self, parent: Context, start_ns: int, elapsed_ns: int, n: int, attributes: dict[str, Any]) -> None:
        """Record the ``n`` step durations of a slow execution inside its own ``keras.train_step`` span."""
        per_step = elapsed_ns / n / 1e9
        attributes[sc.ML_STEP_DURATION] = per_step
        attributes[sc.ML_SLOW_THRESHOLD] = self._detector.threshold
        attributes[sc.ML_RUN_NAME] = self._run_name
        if n > 1:
            attributes[sc.ML_STEPS_PER_EXECUTION] = n
        span = start_span(
            self._tracer, sc.SPAN_KERAS_TRAIN_STEP, context=parent, start_time=start_ns, attributes=attributes
        )
        ctx = trace.set_span_in_context(span)
        for _ in range(n):
            self._histogram.record(per_step, self._attrs, context=ctx)
        end_span(span, end_time=start_ns + elapsed_ns)
        trace_id = format(span.get_span_context().trace_id, "032x")
        entry = (per_step, attributes[sc.ML_STEP], trace_id)
        if len(self.slowest) < _SUMMARY_SLOWEST:
            heapq.heappush(self.slowest, entry)
        else:
            heapq.heappushpop(self.slowest, entry)

    def log_summary(self, steps: int, total_ns: int) -> None:
        """The one INFO line of a finished run: step count, mean step time, slowest steps."""
        if not steps:
            return
        slowest = ", ".join(
            f"step {step} {seconds * 1000:.1f} ms trace_id={tid}"
            for seconds, step, tid in sorted(self.slowest, reverse=True)
        )
        _LOG.info(
            "otel_ml: run %r trained %d steps, mean step %.2f ms; slowest: %s",
            self._run_name,
            steps,
            total_ns / steps / 1e6,
            slowest or "none over the slow-step threshold",
        )


# --- anomalies --------------------------------------------------------------------------


class LossWatch:
    """Checks each trusted batch loss; the spike baseline takes full-size batches only."""

    __slots__ = ("_attrs", "_counter", "_run_name", "_spans", "_spikes", "_warned")

    def __init__(
        self, counter: Counter, attrs: dict[str, Any], spikes: SpikeDetector, spans: RunSpans, run_name: str
    ) -> None:
        self._counter = counter
        self._attrs = {kind: {**attrs, sc.ML_ANOMALY_KIND: kind} for kind in (sc.ANOMALY_NAN, sc.ANOMALY_SPIKE)}
        self._spikes = spikes
        self._spans = spans
        self._run_name = run_name
        self._warned: set[str] = set()

    def check(self, loss: float, step: int, full_batch: bool) -> None:
        """Count ``loss`` if it is non-finite, or a spike of a full-size batch.

        A short batch's mean is over few samples and much noisier than the
        baseline of full batches: it is neither tested nor added.
        """
        if not math.isfinite(loss):
            self._anomaly(sc.ANOMALY_NAN, loss, step)
        elif full_batch and self._spikes.observe(loss):
            self._anomaly(sc.ANOMALY_SPIKE, loss, step)

    def _anomaly(self, kind: str, loss: float, step: int) -> None:
        self._counter.add(1, self._attrs[kind])
        self._spans.event_once(kind, {sc.ML_ANOMALY_KIND: kind, sc.ML_STEP: step, sc.ML_BATCH_LOSS: loss})
        if kind not in self._warned:
            self._warned.add(kind)
            _LOG.warning(
                "otel_ml: %s at step %d of run %r (batch loss %r); counted in ml.train.anomalies, "
                "training continues. Further %s anomalies in this fit are counted, not logged.",
                kind,
                step,
                self._run_name,
                loss,
                kind,
            )


# --- epoch-end values -------------------------------------------------------------------


class EpochValues:
    """Puts each numeric epoch log on the epoch span and, when finite, on its gauge."""

    __slots__ = ("_attrs", "_m", "_metric_attrs", "_val_attrs")

    def __init__(self, instruments: TrainingInstruments, attrs: dict[str, Any]) -> None:
        self._m = instruments
        self._attrs = attrs
        self._val_attrs = {**attrs, sc.ML_PHASE: sc.PHASE_VALIDATION}
        self._metric_attrs: dict[tuple[str, str], dict[str, Any]] = {}

    def record(self, logs: dict[str, Any] | None, span: Span | None) -> None:
        """Each key on its own: one odd value costs that value, not the others."""
        for key, raw in list((logs or {}).items()):
            try:
                value = as_float(raw)
                if value is None:
                    continue
                if span is not None:
                    span.set_attribute(sc.ML_LOGS_PREFIX + str(key), value)
                if math.isfinite(value):
                    self._gauge(str(key), value)
            except Exception as exc:  # noqa: BLE001 - never break training
                report("epoch log value", exc)

    def _gauge(self, key: str, value: float) -> None:
        if key in _SKIPPED:
            return
        if key == "val_loss":
            self._m.loss.set(value, self._val_attrs)
            return
        phase, name = (sc.PHASE_VALIDATION, key[4:]) if key.startswith("val_") else (sc.PHASE_TRAIN, key)
        attrs = self._metric_attrs.get((name, phase))
        if attrs is None:
            if len(self._metric_attrs) >= _MAX_METRIC_NAMES:
                return
            attrs = {**self._attrs, sc.ML_METRIC_NAME: name, sc.ML_PHASE: phase}
            self._metric_attrs[(name, phase)] = attrs
        self._m.metric.set(value, attrs)
