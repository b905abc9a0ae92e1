"""The summary instruments, created once per meter; shared by the tf.summary instrumentor and the bridge."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.metrics import Counter, Meter

from otel_ml._core import semconv as sc
from otel_ml._core.gauge import Gauge
from otel_ml._training.instruments import TrainingInstruments


@dataclass(frozen=True)
class SummaryInstruments:
    """``ml.tensorboard.*`` instruments plus the core training ones that well-known tags feed."""

    scalar: Gauge
    distribution: Gauge
    writes: Counter
    dropped: Counter
    nonfinite: Counter
    step: Gauge
    train: TrainingInstruments

    @classmethod
    def create(cls, meter: Meter, training: TrainingInstruments | None = None) -> SummaryInstruments:
        """Create the instruments on ``meter``; the training ones are the Keras path's own.

        Args:
            meter: The meter of the ``ml.tensorboard.*`` instruments.
            training: The ``ml.train.*`` instruments well-known tags feed: the tf.summary
                instrumentor passes :meth:`TrainingInstruments.shared`, the very ones the Keras
                instrumentors record into. None: they are created on ``meter`` (a process
                with no Keras instrumentor, such as the bridge's).
        """
        return cls(
            scalar=meter.create_gauge(
                sc.METRIC_SUMMARY_SCALAR,
                unit=sc.UNIT_DIMENSIONLESS,
                description="The latest finite value written by tf.summary.scalar, by ml.summary.tag and ml.run.name.",
            ),
            distribution=meter.create_gauge(
                sc.METRIC_SUMMARY_DISTRIBUTION,
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
            nonfinite=meter.create_counter(
                sc.METRIC_SUMMARY_NONFINITE,
                unit=sc.UNIT_WRITE,
                description="Scalar writes whose value was NaN or infinite; kept off the gauges and counted here.",
            ),
            step=meter.create_gauge(
                sc.METRIC_SUMMARY_STEP,
                unit=sc.UNIT_STEP,
                description="The highest step of the summaries written in a run.",
            ),
            train=training or TrainingInstruments.create(meter),
        )
