"""The names of otel_ml's own instruments, spans, events and attributes, in one module.

Names follow the OpenTelemetry semantic conventions where they exist and the
documented ``ml.*`` namespace where they don't. A name that the stable
``opentelemetry.semconv`` modules declare (``error.type``, the HTTP server
names) is imported from there and re-exported, so that this module stays the
one list; the ``hw.*`` GPU names exist only among the incubating conventions,
which are not a stable API, so they are declared here with the conventions'
spelling. (The ``process.*`` metrics come from the system-metrics
instrumentation, which names them itself.) Keeping the names here means the
docs, the collector configs, the alert rules and the dashboard have one
source to agree with.

The constant's prefix says what a name is: ``METRIC_*`` names an instrument,
``SPAN_*`` a span, ``EVENT_*`` a span event, ``UNIT_*`` a unit; every other
constant is an attribute key (named after the key itself, ``ML_MODEL_NAME``
for ``ml.model.name``) or, grouped under its key, one of that attribute's
values (``PHASE_TRAIN``).
"""

from __future__ import annotations

from typing import Final

# Stable conventions, re-exported (present since opentelemetry-semantic-conventions 0.51b0, the oldest supported).
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE as ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import HTTP_REQUEST_METHOD as HTTP_REQUEST_METHOD
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE as HTTP_RESPONSE_STATUS_CODE
from opentelemetry.semconv.attributes.http_attributes import HTTP_ROUTE as HTTP_ROUTE
from opentelemetry.semconv.attributes.network_attributes import NETWORK_PROTOCOL_VERSION as NETWORK_PROTOCOL_VERSION
from opentelemetry.semconv.attributes.url_attributes import URL_PATH as URL_PATH
from opentelemetry.semconv.attributes.url_attributes import URL_SCHEME as URL_SCHEME
from opentelemetry.semconv.metrics import http_metrics as _http_metrics

# --- attributes -------------------------------------------------------------
ML_FRAMEWORK: Final = "ml.framework"
ML_MODEL_NAME: Final = "ml.model.name"
ML_MODEL_VERSION: Final = "ml.model.version"
"""Set when known (Triton layout, an explicit name, ``OTEL_ML_MODEL_VERSION``); at most 8 per model name."""
ML_RUN_NAME: Final = "ml.run.name"
ML_PHASE: Final = "ml.phase"
ML_METRIC_NAME: Final = "ml.metric.name"
ML_ANOMALY_KIND: Final = "ml.anomaly.kind"
ML_EPOCH: Final = "ml.epoch"
ML_EPOCHS: Final = "ml.epochs"
"""On ``keras.fit``: the epochs that ran in that fit (began), not the ``epochs=`` argument."""
ML_EPOCH_START: Final = "ml.epoch.start"
"""On ``keras.fit``: the 0-based index of its first epoch (``initial_epoch=``, or where ``BackupAndRestore``
resumed)."""
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
ML_OPTIMIZER_NAME: Final = "ml.optimizer.name"
"""Which optimizer a learning rate belongs to: the model attribute that holds it (``optimizer``, ``d_optimizer``)."""
ML_LOGS_PREFIX: Final = "ml.logs."
EVENT_ML_ANOMALY: Final = "ml.anomaly"
"""Span event on the epoch span, once per anomaly kind per epoch."""

# Resource attributes that identify a worker of a distributed job.
ML_WORKER_TYPE: Final = "ml.worker.type"
ML_WORKER_INDEX: Final = "ml.worker.index"

# --- attribute values --------------------------------------------------------
FRAMEWORK_KERAS: Final = "keras"
FRAMEWORK_TF_KERAS: Final = "tf_keras"
"""``ml.framework`` of Keras 2 training (``tf_keras``, or ``tf.keras`` under ``TF_USE_LEGACY_KERAS=1``)."""
PHASE_TRAIN: Final = "train"
PHASE_VALIDATION: Final = "validation"
PHASE_TEST: Final = "test"
ANOMALY_NAN: Final = "nan_loss"
ANOMALY_SPIKE: Final = "loss_spike"

# --- training metrics ---------------------------------------------------------
METRIC_TRAIN_STEP_DURATION: Final = "ml.train.step.duration"
METRIC_TRAIN_STEPS: Final = "ml.train.steps"
METRIC_TRAIN_SAMPLES: Final = "ml.train.samples"
METRIC_TRAIN_EPOCHS: Final = "ml.train.epochs"
METRIC_TRAIN_EPOCH_DURATION: Final = "ml.train.epoch.duration"
METRIC_TRAIN_LOSS: Final = "ml.train.loss"
METRIC_TRAIN_METRIC: Final = "ml.train.metric"
METRIC_TRAIN_LEARNING_RATE: Final = "ml.train.learning_rate"
METRIC_TRAIN_ANOMALIES: Final = "ml.train.anomalies"

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

# --- Paddle inference -----------------------------------------------------------
FRAMEWORK_PADDLE: Final = "paddle"
ML_INFERENCE_WARMUP: Final = "ml.inference.warmup"
"""True on the duration series of a predictor's first runs (engine building), so p99 can leave them out."""
ML_INFERENCE_RUN_DURATION: Final = "ml.inference.run.duration"
"""Span attribute: the run's wall time in seconds (on slow-run spans)."""
ML_PADDLE_GPU: Final = "ml.paddle.gpu"
ML_PADDLE_TENSORRT: Final = "ml.paddle.tensorrt"
ML_PADDLE_MKLDNN: Final = "ml.paddle.mkldnn"
METRIC_INFERENCE_DURATION: Final = "ml.inference.duration"
METRIC_INFERENCE_BATCH_SIZE: Final = "ml.inference.batch.size"
METRIC_INFERENCE_ACTIVE: Final = "ml.inference.active"
METRIC_MODEL_LOAD_DURATION: Final = "ml.model.load.duration"
SPAN_PADDLE_RUN: Final = "paddle.predictor.run"
UNIT_REQUEST: Final = "{request}"

# --- serving helpers (otel_ml.serving) -------------------------------------------
METRIC_INFERENCE_QUEUE_DURATION: Final = "ml.inference.queue.duration"
METRIC_INFERENCE_QUEUE_WAITING: Final = "ml.inference.queue.waiting"
METRIC_MODEL_PREDICTIONS: Final = "ml.model.predictions"
METRIC_MODEL_OUTCOMES: Final = "ml.model.outcomes"
METRIC_MODEL_FALSE_POSITIVES: Final = "ml.model.false_positives"
ML_PREDICTION_LABEL: Final = "ml.prediction.label"
"""The predicted class, one of the classes declared to ``ModelQuality`` (others: ``_OTHER``)."""
ML_TRUTH_LABEL: Final = "ml.truth.label"
"""The true class of a prediction whose outcome arrived, bounded like ``ml.prediction.label``."""
ML_PREDICTION_CORRECT: Final = "ml.prediction.correct"
UNIT_PREDICTION: Final = "{prediction}"
UNIT_OUTCOME: Final = "{outcome}"
# HTTP server (otel_ml.serving.instrument_flask_app): the stable names are imported above (``url.path`` goes
# on server spans only, as the conventions require, never on a metric); active requests is still incubating.
METRIC_HTTP_SERVER_REQUEST_DURATION: Final = _http_metrics.HTTP_SERVER_REQUEST_DURATION
METRIC_HTTP_SERVER_ACTIVE_REQUESTS: Final = "http.server.active_requests"
METRIC_HTTP_SERVER_REQUEST_QUEUE_DURATION: Final = "http.server.request.queue.duration"
"""Time a request waited between the front proxy (``X-Request-Start``/``X-Queue-Start``) and the app; no semconv yet."""

# --- GPU (NVML), OpenTelemetry hardware conventions -----------------------------
METRIC_HW_GPU_UTILIZATION: Final = "hw.gpu.utilization"
METRIC_HW_GPU_MEMORY_UTILIZATION: Final = "hw.gpu.memory.utilization"
METRIC_HW_GPU_MEMORY_USAGE: Final = "hw.gpu.memory.usage"
METRIC_HW_GPU_MEMORY_LIMIT: Final = "hw.gpu.memory.limit"
METRIC_HW_POWER: Final = "hw.power"
METRIC_HW_ENERGY: Final = "hw.energy"
METRIC_HW_TEMPERATURE: Final = "hw.temperature"
METRIC_HW_ERRORS: Final = "hw.errors"
METRIC_GPU_PROCESS_MEMORY_USAGE: Final = "ml.gpu.process.memory.usage"
"""No convention covers per-process GPU memory; summing hw.gpu.memory.usage must not double-count it."""
HW_ID: Final = "hw.id"
HW_NAME: Final = "hw.name"
HW_VENDOR: Final = "hw.vendor"
HW_MODEL: Final = "hw.model"
HW_DRIVER_VERSION: Final = "hw.driver_version"
HW_TYPE: Final = "hw.type"
HW_PARENT: Final = "hw.parent"
HW_GPU_TASK: Final = "hw.gpu.task"
PROCESS_PID: Final = "process.pid"
ML_GPU_INDEX: Final = "ml.gpu.index"
"""The NVML device index (nvidia-smi's); for a MIG instance, its parent's."""
ML_GPU_MIG_INDEX: Final = "ml.gpu.mig.index"
"""The MIG instance's slot on its parent GPU; set only on MIG instances."""
HW_TYPE_GPU: Final = "gpu"
HW_VENDOR_NVIDIA: Final = "NVIDIA"
GPU_TASK_GENERAL: Final = "general"
ERROR_CORRECTED: Final = "corrected"
ERROR_UNCORRECTED: Final = "uncorrected"
HW_SERIAL_NUMBER: Final = "hw.serial_number"
HW_FIRMWARE_VERSION: Final = "hw.firmware_version"
HW_SENSOR_LOCATION: Final = "hw.sensor_location"
HW_STATE: Final = "hw.state"
NETWORK_IO_DIRECTION: Final = "network.io.direction"
HW_TYPE_TEMPERATURE: Final = "temperature"
HW_TYPE_FAN: Final = "fan"
SENSOR_DIE: Final = "die"
SENSOR_MEMORY: Final = "memory"
GPU_TASK_ENCODER: Final = "encoder"
GPU_TASK_DECODER: Final = "decoder"
STATE_OK: Final = "ok"
STATE_DEGRADED: Final = "degraded"
STATE_FAILED: Final = "failed"
DIRECTION_RECEIVE: Final = "receive"
DIRECTION_TRANSMIT: Final = "transmit"
METRIC_HW_STATUS: Final = "hw.status"
METRIC_HW_GPU_IO: Final = "hw.gpu.io"
METRIC_HW_FAN_SPEED_RATIO: Final = "hw.fan.speed_ratio"
# Not (yet) conventions: named in the style of hw.gpu.*, each documented in docs/gpu.md with its NVML source.
METRIC_HW_GPU_CLOCK: Final = "hw.gpu.clock"
HW_GPU_CLOCK_DOMAIN: Final = "hw.gpu.clock.domain"
CLOCK_SM: Final = "sm"
CLOCK_MEMORY: Final = "memory"
METRIC_HW_GPU_THROTTLE: Final = "hw.gpu.throttle"
"""1 while NVML reports the clock-event (throttle) reason ``hw.gpu.throttle.reason``, else 0."""
HW_GPU_THROTTLE_REASON: Final = "hw.gpu.throttle.reason"
METRIC_HW_GPU_POWER_LIMIT: Final = "hw.gpu.power.limit"
METRIC_HW_GPU_PCIE_REPLAYS: Final = "hw.gpu.pcie.replays"
METRIC_HW_GPU_NVLINK_IO: Final = "hw.gpu.nvlink.io"
METRIC_HW_GPU_XID_ERRORS: Final = "hw.gpu.xid.errors"
HW_GPU_XID_CODE: Final = "hw.gpu.xid.code"
"""The XID code as a string; codes past the bound are counted as ``other``."""
XID_OTHER: Final = "other"
METRIC_HW_GPU_SM_ACTIVITY: Final = "hw.gpu.sm.activity"
METRIC_HW_GPU_SM_OCCUPANCY: Final = "hw.gpu.sm.occupancy"
METRIC_HW_GPU_TENSOR_ACTIVITY: Final = "hw.gpu.tensor.activity"
METRIC_HW_GPU_DRAM_ACTIVITY: Final = "hw.gpu.dram.activity"
METRIC_HW_GPU_INFO: Final = "hw.gpu.info"
"""1 per reported GPU, carrying its identity (vendor, model, driver, serial, firmware, indices) once;
the other GPU series carry only hw.id, hw.name, hw.type (and hw.parent) and join to it on hw.id."""
METRIC_GPU_PROCESS_UTILIZATION: Final = "ml.gpu.process.utilization"
UNIT_HERTZ: Final = "Hz"
UNIT_REPLAY: Final = "{replay}"
UNIT_RATIO: Final = "1"
UNIT_BYTES: Final = "By"
UNIT_WATTS: Final = "W"
UNIT_JOULES: Final = "J"
UNIT_CELSIUS: Final = "Cel"
UNIT_ERROR: Final = "{error}"

# --- tf.summary and the TensorBoard bridge -------------------------------------
ML_SUMMARY_TAG: Final = "ml.summary.tag"
ML_SUMMARY_KIND: Final = "ml.summary.kind"
ML_SUMMARY_STATISTIC: Final = "ml.summary.statistic"
FRAMEWORK_TF_SUMMARY: Final = "tf_summary"
FRAMEWORK_TENSORBOARD: Final = "tensorboard"
SUMMARY_KIND_SCALAR: Final = "scalar"
SUMMARY_KIND_HISTOGRAM: Final = "histogram"
SUMMARY_KIND_IMAGE: Final = "image"
SUMMARY_KIND_TEXT: Final = "text"
SUMMARY_KIND_AUDIO: Final = "audio"
SUMMARY_KIND_OTHER: Final = "other"
# Prometheus's linter (promtool check metrics) rejects a series whose name holds a
# metric type ("_summary_", "_histogram"), so these live under ml.tensorboard.*.
METRIC_SUMMARY_SCALAR: Final = "ml.tensorboard.scalar"
METRIC_SUMMARY_DISTRIBUTION: Final = "ml.tensorboard.distribution"
METRIC_SUMMARY_WRITES: Final = "ml.tensorboard.writes"
METRIC_SUMMARY_DROPPED: Final = "ml.tensorboard.dropped"
METRIC_SUMMARY_NONFINITE: Final = "ml.tensorboard.nonfinite"
METRIC_SUMMARY_STEP: Final = "ml.tensorboard.step"
METRIC_SUMMARY_BRIDGE_EVENTS: Final = "ml.tensorboard.bridge.events"
METRIC_SUMMARY_BRIDGE_BAD_FILES: Final = "ml.tensorboard.bridge.bad_files"
METRIC_SUMMARY_BRIDGE_PENDING: Final = "ml.tensorboard.bridge.pending"
UNIT_WRITE: Final = "{write}"
UNIT_EVENT: Final = "{event}"
UNIT_FILE: Final = "{file}"
# What a tf.summary or bridged scalar feeding ml.train.* cannot know: said as such, never guessed, so that
# every ml.train.* series carries the same label keys whichever path recorded it (docs/tf_summary.md).
PHASE_UNKNOWN: Final = "unknown"
"""``ml.phase`` of a well-known tag when neither its tag nor its run's path names a phase."""
MODEL_NAME_UNKNOWN: Final = "unknown"
"""``ml.model.name`` of ml.train.* series fed by tf.summary or the bridge: an event file names no model."""
OPTIMIZER_NAME_UNKNOWN: Final = "unknown"
"""``ml.optimizer.name`` of ml.train.learning_rate fed by tf.summary or the bridge."""
TRAINING_SCOPE: Final = "otel_ml.training"
"""The one instrumentation scope (meter) of every ml.train.* instrument, whichever instrumentor records into it."""
