"""Queue time apart from compute time: how long requests wait for a free predictor, and how many wait.

A service that keeps a pool of predictors (a predictor must not run on two
threads at once) adds queueing in front of the model. Under load that wait,
not the model, is what grows: ``ml.inference.duration`` stays flat while the
request latency climbs. Timing the wait separately tells the two apart.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from opentelemetry import context, metrics

from otel_ml._core import semconv as sc
from otel_ml._core.buckets import DURATION_BUCKETS_SECONDS
from otel_ml._core.guard import report
from otel_ml.serving._common import Callback, Deferred, Tally, exemplar_possible, live_set, meter, model_attributes


class QueueTimer:
    """Records ``ml.inference.queue.duration`` and ``ml.inference.queue.waiting`` around a wait.

    Per wait: two atomic counter bumps and one histogram measurement (in the
    request's context, so its exemplar names the request's trace; in a batch
    when no sampled span could give it one); requests waiting are read from
    the bumps at collection.

    Args:
        model_name: ``ml.model.name`` of the model the queue serves.
        version: ``ml.model.version``, or None.
        meter_provider: Default: the global one.

    Raises:
        ValueError: an empty or over-long name, or a version that is not a string or whole number.

    Example:
        >>> import queue
        >>> free = queue.Queue()
        >>> free.put("predictor")
        >>> waits = QueueTimer("iris_mlp")
        >>> with waits.waiting():
        ...     predictor = free.get()
        >>> predictor
        'predictor'
    """

    def __init__(
        self, model_name: str, version: str | int | None = None, meter_provider: metrics.MeterProvider | None = None
    ) -> None:
        self.attrs = model_attributes(model_name, version)
        m = meter(meter_provider)
        duration = m.create_histogram(
            sc.METRIC_INFERENCE_QUEUE_DURATION,
            unit=sc.UNIT_SECONDS,
            description="Time a request waited for a free predictor before its run.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS_SECONDS),
        )
        self._record = duration.record
        self._deferred = Deferred(duration)  # waits in no sampled span: in batches
        self._entered, self._left = Tally(), Tally()

        def create(callback: Callback) -> None:
            m.create_observable_up_down_counter(
                sc.METRIC_INFERENCE_QUEUE_WAITING,
                callbacks=[callback],
                unit=sc.UNIT_REQUEST,
                description="Requests waiting for a free predictor now.",
            )

        live_set(meter_provider, sc.METRIC_INFERENCE_QUEUE_WAITING, create).add(self)

    def waiting(self) -> _Wait:
        """A context manager around one wait: counted as waiting inside it, timed when it ends."""
        return _Wait(self)

    def observe(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """Requests waiting now; reading ``left`` first can only over-count one that enters meanwhile."""
        left = self._left.value()
        yield self._entered.value() - left, self.attrs


class _Wait:
    """One wait; the exception of the block (a timeout) passes through unchanged."""

    __slots__ = ("_start", "_timer")

    def __init__(self, timer: QueueTimer) -> None:
        self._timer = timer
        self._start = 0

    def __enter__(self) -> _Wait:
        self._timer._entered.bump()
        self._start = time.perf_counter_ns()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Any:
        elapsed = (time.perf_counter_ns() - self._start) / 1e9
        timer = self._timer
        timer._left.bump()
        try:
            if exemplar_possible(context.get_current()):
                timer._record(elapsed, timer.attrs)  # in the request's context: the exemplar names its trace
            else:
                timer._deferred.add(elapsed, timer.attrs)
        except Exception as exc:  # noqa: BLE001 - the wait's own exception (if any) passes through unchanged
            report("serving.queue.record", exc)
        return None
