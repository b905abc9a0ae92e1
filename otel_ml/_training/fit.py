"""One ``fit`` call's telemetry: the callback otel_ml injects, for every Keras flavour.

A new :class:`FitRun` is made per ``fit``; it only wires Keras's hooks to the
framework-independent parts in :mod:`otel_ml._training`, and asks its
:class:`~otel_ml._training.flavour.Flavour` where Keras 3 and Keras 2 differ. The per-batch path
(:meth:`FitRun.on_train_batch_end`) does a fixed amount of work with
attribute dicts built once per fit. Every hook does each of its jobs under
its own guard, so that one failing job (an odd log value, a raising span
processor) costs that job alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.trace import Span, Tracer

from otel_ml._core import semconv as sc
from otel_ml._core.guard import guarded, report
from otel_ml._core.slow import SlowDetector
from otel_ml._training.anomalies import LossWatch
from otel_ml._training.epoch import EpochValues
from otel_ml._training.flavour import Flavour
from otel_ml._training.instruments import TrainingInstruments
from otel_ml._training.loss import SpikeDetector
from otel_ml._training.loss_weights import Loss, LossReader
from otel_ml._training.optimizers import Optimizers
from otel_ml._training.options import TrainingOptions
from otel_ml._training.slowest import SlowSteps
from otel_ml._training.spans import RunSpans
from otel_ml._training.steps import BatchIndex, PendingSteps
from otel_ml._training.values import positive_int, read_attribute


class FitRun:
    """Telemetry state of one ``fit`` call, and the Keras callback hooks that feed it."""

    def __init__(
        self,
        model: Any,
        instruments: TrainingInstruments,
        tracer: Tracer,
        options: TrainingOptions,
        run_name: str,
        fit_span: Span,
        flavour: Flavour,
    ) -> None:
        super().__init__()  # the flavour's Callback.__init__, via the class built in .wrappers
        for name, value in flavour.callback_attributes.items():
            setattr(self, name, value)  # after Callback.__init__, which sets some of them itself
        self._m = instruments
        self._fit_model = model
        self._flavour = flavour
        self.run_name = run_name
        attrs = {sc.ML_FRAMEWORK: flavour.framework, sc.ML_MODEL_NAME: str(model.name), sc.ML_RUN_NAME: run_name}
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
        self._exact_steps = False  # read the optimizers' steps: executions of unknown length
        self._settle_from = -1  # from this batch index on, the loss weights are read at each execution
        self._spe = 1  # the model's steps_per_execution
        self._full = 0.0  # the largest weight per step seen: a full batch
        self.adapter: Any = None  # the training data adapter (Keras 2: DataHandler), captured in .wrappers
        self.global_step = 0
        self.total_step_ns = 0
        self._epoch = 0
        self._epoch_t0 = 0
        self._wall0 = 0
        self._t0 = 0

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
        if steps is not None and steps != num:
            num, partial = steps, None  # steps_per_epoch cut the epoch short: no partial batch
        self._index.declare(size, num, partial)
        self._spe = positive_int(read_attribute(self._fit_model, "steps_per_execution")) or 1
        self._know_length(num)
        if num is not None:
            self.spans.fit.set_attribute(sc.ML_STEPS_PER_EPOCH, num)
        if size is not None:
            self.spans.fit.set_attribute(sc.ML_BATCH_SIZE, size)

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
        self._new_epoch()
        guarded("keras.on_epoch_begin span")(self.spans.start_epoch)(epoch)

    @guarded("keras.on_epoch_begin counts")
    def _new_epoch(self) -> None:
        self._index.new_epoch()
        if self._index.num_batches is None and self.adapter is not None:
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
        guarded("keras.fit end spans")(self.spans.finish)(self.global_step, error)
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
