"""The training instruments, created once per meter; shared by every framework's training path.

The Keras 3 and Keras 2 (``tf_keras``) instrumentors record into them per
step, and the tf.summary instrumentor mirrors scalars into the same names.
All of them take the instruments from one meter, :data:`~otel_ml._core.semconv.TRAINING_SCOPE`
(:meth:`TrainingInstruments.shared`): one name created in two scopes makes the
SDK warn ("conflicting metrics identities") and Prometheus's translation
merge the two into one family.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry import metrics
from opentelemetry.metrics import Counter, Histogram, Meter, MeterProvider

from otel_ml._core import semconv as sc
from otel_ml._core.buckets import DURATION_BUCKETS_SECONDS
from otel_ml._core.gauge import Gauge
from otel_ml.version import __version__


@dataclass(frozen=True)
class TrainingInstruments:
    """One of each training instrument; shared by every ``fit`` in the process."""

    step_duration: Histogram
    steps: Counter
    samples: Counter
    epochs: Counter
    epoch_duration: Histogram
    loss: Gauge
    metric: Gauge
    learning_rate: Gauge
    anomalies: Counter

    @classmethod
    def shared(cls, meter_provider: MeterProvider | None = None) -> TrainingInstruments:
        """The instruments on the one training meter of ``meter_provider`` (default: the global one).

        The SDK hands back the instruments already created under the same name,
        kind, unit and description, so every instrumentor that calls this records
        into the same ones.
        """
        return cls.create(metrics.get_meter(sc.TRAINING_SCOPE, __version__, meter_provider))

    @classmethod
    def create(cls, meter: Meter) -> TrainingInstruments:
        """Create the instruments on ``meter`` with the names of :mod:`otel_ml._core.semconv`."""
        buckets = list(DURATION_BUCKETS_SECONDS)
        return cls(
            step_duration=meter.create_histogram(
                sc.METRIC_TRAIN_STEP_DURATION,
                unit=sc.UNIT_SECONDS,
                description="Wall time of one training step (one batch), host side.",
                explicit_bucket_boundaries_advisory=buckets,
            ),
            steps=meter.create_counter(
                sc.METRIC_TRAIN_STEPS, unit=sc.UNIT_STEP, description="Training steps completed."
            ),
            samples=meter.create_counter(
                sc.METRIC_TRAIN_SAMPLES,
                unit=sc.UNIT_SAMPLE,
                description="Training samples processed; its rate is throughput.",
            ),
            epochs=meter.create_counter(
                sc.METRIC_TRAIN_EPOCHS, unit=sc.UNIT_EPOCH, description="Training epochs completed."
            ),
            epoch_duration=meter.create_histogram(
                sc.METRIC_TRAIN_EPOCH_DURATION,
                unit=sc.UNIT_SECONDS,
                description="Wall time of one training epoch, validation included.",
                explicit_bucket_boundaries_advisory=buckets,
            ),
            loss=meter.create_gauge(
                sc.METRIC_TRAIN_LOSS,
                unit=sc.UNIT_DIMENSIONLESS,
                description="Loss: the latest batch loss (train) or the epoch's validation loss.",
            ),
            metric=meter.create_gauge(
                sc.METRIC_TRAIN_METRIC,
                unit=sc.UNIT_DIMENSIONLESS,
                description="Every other numeric value Keras logs at epoch end, by ml.metric.name.",
            ),
            learning_rate=meter.create_gauge(
                sc.METRIC_TRAIN_LEARNING_RATE,
                unit=sc.UNIT_DIMENSIONLESS,
                description="Learning rate of each optimizer that trained (ml.optimizer.name), read at each epoch end.",
            ),
            anomalies=meter.create_counter(
                sc.METRIC_TRAIN_ANOMALIES,
                unit=sc.UNIT_ANOMALY,
                description="Training anomalies (non-finite loss, loss spikes), by ml.anomaly.kind.",
            ),
        )
