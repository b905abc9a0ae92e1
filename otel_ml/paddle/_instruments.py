"""The Paddle instrumentor's metric instruments, created once at instrument time."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation

from otel_ml._core import semconv as sc
from otel_ml._core.buckets import BATCH_SIZE_BUCKETS, DURATION_BUCKETS_SECONDS

_Callback = Callable[[CallbackOptions], Iterable[Observation]]


@dataclass(frozen=True)
class PaddleInstruments:
    """The run-duration, batch-size and load-duration histograms; runs in flight are observed, not counted."""

    duration: Histogram
    batch_size: Histogram
    load_duration: Histogram

    @staticmethod
    def create_observable(meter: Meter, observe_active: _Callback) -> None:
        """Create ``ml.inference.active`` (once per meter provider): runs in flight per model.

        An *observable* up-down counter fed from per-model counters: two
        synchronous ``add`` calls per run would cost more than a small
        model's run takes.
        """
        meter.create_observable_up_down_counter(
            sc.METRIC_INFERENCE_ACTIVE,
            callbacks=[observe_active],
            unit=sc.UNIT_REQUEST,
            description="Paddle predictor runs in flight.",
        )

    @classmethod
    def create(cls, meter: Meter) -> PaddleInstruments:
        """Create the synchronous instruments on ``meter``."""
        return cls(
            duration=meter.create_histogram(
                sc.METRIC_INFERENCE_DURATION,
                unit=sc.UNIT_SECONDS,
                description="Wall time of one Paddle predictor run(); ml.inference.warmup marks the first runs.",
                explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS_SECONDS),
            ),
            batch_size=meter.create_histogram(
                sc.METRIC_INFERENCE_BATCH_SIZE,
                unit=sc.UNIT_SAMPLE,
                description="Samples per run, from the first input's leading dimension when it is known.",
                explicit_bucket_boundaries_advisory=list(BATCH_SIZE_BUCKETS),
            ),
            load_duration=meter.create_histogram(
                sc.METRIC_MODEL_LOAD_DURATION,
                unit=sc.UNIT_SECONDS,
                description="Wall time of create_predictor() or clone(); error.type when it raised.",
                explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS_SECONDS),
            ),
        )
