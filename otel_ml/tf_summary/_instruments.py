"""The summary instruments, created once per meter; shared by the instrumentor and the bridge."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.metrics import Counter, Meter
from opentelemetry.metrics import _Gauge as Gauge  # the synchronous gauge is still underscored in the API

from otel_ml import _semconv as sc
from otel_ml._training.instruments import TrainingInstruments as KerasInstruments


@dataclass(frozen=True)
class SummaryInstruments:
    """``ml.summary.*`` instruments plus the core training ones that well-known tags feed."""

    scalar: Gauge
    histogram: Gauge
    writes: Counter
    dropped: Counter
    step: Gauge
    train: KerasInstruments

    @classmethod
    def create(cls, meter: Meter) -> SummaryInstruments:
        """Create the instruments on ``meter``; the training ones exactly as the Keras path names them."""
        return cls(
            scalar=meter.create_gauge(
                sc.METRIC_SUMMARY_SCALAR,
                unit=sc.UNIT_DIMENSIONLESS,
                description="The latest value written by tf.summary.scalar, by ml.summary.tag and ml.run.name.",
            ),
            histogram=meter.create_gauge(
                sc.METRIC_SUMMARY_HISTOGRAM,
                unit=sc.UNIT_DIMENSIONLESS,
                description="Statistics (ml.summary.statistic: count, min, max, mean) of the latest "
                "tf.summary.histogram of a tag; mean is computed from the bucket centres.",
            ),
            writes=meter.create_counter(
                sc.METRIC_SUMMARY_WRITES,
                unit=sc.UNIT_WRITE,
                description="Summary writes exported, by ml.summary.tag, ml.summary.kind and ml.run.name.",
            ),
            dropped=meter.create_counter(
                sc.METRIC_SUMMARY_DROPPED,
                unit=sc.UNIT_WRITE,
                description="Summary writes not exported because their run reached the distinct-tag cap.",
            ),
            step=meter.create_gauge(
                sc.METRIC_SUMMARY_STEP,
                unit=sc.UNIT_STEP,
                description="The step of the latest summary written in a run.",
            ),
            train=KerasInstruments.create(meter),
        )
