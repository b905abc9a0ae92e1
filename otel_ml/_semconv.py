"""Every metric, span and attribute name otel_ml emits, in one module.

Names follow the OpenTelemetry semantic conventions where they exist
(``error.type``, ``hw.*``) and the documented ``ml.*`` namespace where they
don't. Keeping them here means the README, the collector configs, the alert
rules and the dashboard have one source to agree with.
"""

from __future__ import annotations

from typing import Final

# --- attributes -------------------------------------------------------------
ML_FRAMEWORK: Final = "ml.framework"
ML_MODEL_NAME: Final = "ml.model.name"
ML_RUN_NAME: Final = "ml.run.name"
ML_PHASE: Final = "ml.phase"
ML_METRIC_NAME: Final = "ml.metric.name"
ML_ANOMALY_KIND: Final = "ml.anomaly.kind"
ML_EPOCH: Final = "ml.epoch"
ML_EPOCHS: Final = "ml.epochs"
ML_STEP: Final = "ml.step"
ML_BATCH_INDEX: Final = "ml.batch.index"
ML_BATCH_SIZE: Final = "ml.batch.size"
ML_BATCH_LOSS: Final = "ml.batch.loss"
ML_STEPS_PER_EPOCH: Final = "ml.steps_per_epoch"
ML_STEPS_PER_EXECUTION: Final = "ml.steps_per_execution"
ML_STEP_DURATION: Final = "ml.step.duration"
ML_SLOW_THRESHOLD: Final = "ml.slow_threshold"
"""Set only on spans made because something was slow; the slow-step view keeps exactly these."""
ML_REPLICA_COUNT: Final = "ml.replica.count"
ML_LOGS_PREFIX: Final = "ml.logs."
ERROR_TYPE: Final = "error.type"

# Resource attributes that identify a worker of a distributed job.
ML_WORKER_TYPE: Final = "ml.worker.type"
ML_WORKER_INDEX: Final = "ml.worker.index"

# --- attribute values --------------------------------------------------------
FRAMEWORK_KERAS: Final = "keras"
PHASE_TRAIN: Final = "train"
PHASE_VALIDATION: Final = "validation"
ANOMALY_NAN: Final = "nan_loss"
ANOMALY_SPIKE: Final = "loss_spike"

# --- training metrics ---------------------------------------------------------
TRAIN_STEP_DURATION: Final = "ml.train.step.duration"
TRAIN_STEPS: Final = "ml.train.steps"
TRAIN_SAMPLES: Final = "ml.train.samples"
TRAIN_EPOCHS: Final = "ml.train.epochs"
TRAIN_EPOCH_DURATION: Final = "ml.train.epoch.duration"
TRAIN_LOSS: Final = "ml.train.loss"
TRAIN_METRIC: Final = "ml.train.metric"
TRAIN_LEARNING_RATE: Final = "ml.train.learning_rate"
TRAIN_ANOMALIES: Final = "ml.train.anomalies"

# --- spans -------------------------------------------------------------------
SPAN_KERAS_FIT: Final = "keras.fit"
SPAN_KERAS_EPOCH: Final = "keras.epoch"
SPAN_KERAS_EVALUATE: Final = "keras.evaluate"
SPAN_KERAS_PREDICT: Final = "keras.predict"
SPAN_KERAS_TRAIN_STEP: Final = "keras.train_step"

# --- units (UCUM) ------------------------------------------------------------
UNIT_SECONDS: Final = "s"
UNIT_STEP: Final = "{step}"
UNIT_SAMPLE: Final = "{sample}"
UNIT_EPOCH: Final = "{epoch}"
UNIT_ANOMALY: Final = "{anomaly}"
# Dimensionless training gauges (loss, metrics, learning rate) carry no unit at
# all: the Python Prometheus exporter maps "1" to no suffix while the
# collector's translator maps a gauge in "1" to "_ratio", so "1" would give two
# different series names for one metric. An empty unit gives the same name on
# both paths.
UNIT_DIMENSIONLESS: Final = ""
