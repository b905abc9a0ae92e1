"""One data point of every otel_ml metric, to compare series names on both paths.

The same instruments, units, attributes and resource are recorded into the
embedded endpoint's registry and, over OTLP, into the collector; the test
then checks that Prometheus sees the same series and label names from both.
The list follows otel_ml/_core/semconv.py and docs/metric-names.md.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource

from otel_ml._core import semconv as sc

RUN = "names-check"
RESOURCE = Resource.create(
    {
        "service.name": "names-svc",
        "service.instance.id": "names-0",
        sc.ML_WORKER_TYPE: "worker",
        sc.ML_WORKER_INDEX: 3,
        "host.name": "not-a-label",  # dropped on both paths: not a worker identity
    }
)
_TRAIN = {sc.ML_FRAMEWORK: "keras", sc.ML_MODEL_NAME: "m", sc.ML_RUN_NAME: RUN}
_GPU = {sc.HW_ID: "GPU-0", sc.HW_NAME: "gpu0", sc.HW_TYPE: sc.HW_TYPE_GPU, sc.ML_RUN_NAME: RUN}
# The GPU's identity: on its hw.gpu.info series only.
_GPU_INFO = {
    **_GPU,
    sc.HW_VENDOR: "NVIDIA",
    sc.HW_MODEL: "NVIDIA H100 80GB HBM3",
    sc.HW_DRIVER_VERSION: "550.54.15",
    sc.HW_SERIAL_NUMBER: "1654922012345",
    sc.HW_FIRMWARE_VERSION: "96.00.99.00.01",
    sc.ML_GPU_INDEX: 0,
}
# A GPU's temperature sensor or fan: its own hw.id, the GPU as hw.parent.
_SENSOR = {sc.HW_ID: "GPU-0/memory", sc.HW_NAME: "gpu0 memory", sc.HW_PARENT: "GPU-0", sc.ML_RUN_NAME: RUN}
_SERVE = {sc.ML_MODEL_NAME: "m", sc.ML_MODEL_VERSION: "2", sc.ML_RUN_NAME: RUN}
_INFER = {sc.ML_FRAMEWORK: "paddle", sc.ML_MODEL_NAME: "m", sc.ML_RUN_NAME: RUN, sc.ML_INFERENCE_WARMUP: False}

# (name, kind, unit, attributes)
INSTRUMENTS: list[tuple[str, str, str, dict[str, Any]]] = [
    (sc.METRIC_TRAIN_STEP_DURATION, "histogram", sc.UNIT_SECONDS, _TRAIN),
    (sc.METRIC_TRAIN_STEPS, "counter", sc.UNIT_STEP, _TRAIN),
    (sc.METRIC_TRAIN_SAMPLES, "counter", sc.UNIT_SAMPLE, _TRAIN),
    (sc.METRIC_TRAIN_EPOCHS, "counter", sc.UNIT_EPOCH, _TRAIN),
    (sc.METRIC_TRAIN_EPOCH_DURATION, "histogram", sc.UNIT_SECONDS, _TRAIN),
    (sc.METRIC_TRAIN_LOSS, "gauge", sc.UNIT_DIMENSIONLESS, {**_TRAIN, sc.ML_PHASE: sc.PHASE_TRAIN}),
    (
        sc.METRIC_TRAIN_METRIC,
        "gauge",
        sc.UNIT_DIMENSIONLESS,
        {**_TRAIN, sc.ML_PHASE: "validation", sc.ML_METRIC_NAME: "mae"},
    ),
    (sc.METRIC_TRAIN_LEARNING_RATE, "gauge", sc.UNIT_DIMENSIONLESS, _TRAIN),
    (sc.METRIC_TRAIN_ANOMALIES, "counter", sc.UNIT_ANOMALY, {**_TRAIN, sc.ML_ANOMALY_KIND: sc.ANOMALY_NAN}),
    (sc.METRIC_INFERENCE_DURATION, "histogram", sc.UNIT_SECONDS, {**_INFER, sc.ERROR_TYPE: "ValueError"}),
    (sc.METRIC_INFERENCE_BATCH_SIZE, "histogram", sc.UNIT_SAMPLE, _INFER),
    (sc.METRIC_INFERENCE_ACTIVE, "updowncounter", "{request}", _INFER),
    (sc.METRIC_MODEL_LOAD_DURATION, "histogram", sc.UNIT_SECONDS, {**_SERVE, sc.ML_FRAMEWORK: "paddle"}),
    (sc.METRIC_INFERENCE_QUEUE_DURATION, "histogram", sc.UNIT_SECONDS, _SERVE),
    (sc.METRIC_INFERENCE_QUEUE_WAITING, "updowncounter", sc.UNIT_REQUEST, _SERVE),
    (sc.METRIC_MODEL_PREDICTIONS, "counter", sc.UNIT_PREDICTION, {**_SERVE, sc.ML_PREDICTION_LABEL: "cat"}),
    (
        sc.METRIC_MODEL_OUTCOMES,
        "counter",
        sc.UNIT_OUTCOME,
        {**_SERVE, sc.ML_TRUTH_LABEL: "cat", sc.ML_PREDICTION_CORRECT: True},
    ),
    (sc.METRIC_HW_GPU_UTILIZATION, "gauge", "1", {**_GPU, sc.HW_GPU_TASK: sc.GPU_TASK_GENERAL}),
    (sc.METRIC_HW_GPU_MEMORY_UTILIZATION, "gauge", "1", _GPU),
    (sc.METRIC_HW_GPU_MEMORY_USAGE, "updowncounter", "By", _GPU),
    (sc.METRIC_HW_GPU_MEMORY_LIMIT, "updowncounter", "By", _GPU),
    (sc.METRIC_GPU_PROCESS_MEMORY_USAGE, "updowncounter", "By", {**_GPU, "process.pid": 1234}),
    (sc.METRIC_HW_POWER, "gauge", "W", _GPU),
    (sc.METRIC_HW_ENERGY, "counter", "J", _GPU),
    (sc.METRIC_HW_ERRORS, "counter", "{error}", {**_GPU, sc.ERROR_TYPE: sc.ERROR_UNCORRECTED}),
    (sc.METRIC_HW_STATUS, "updowncounter", "1", {**_GPU, sc.HW_STATE: sc.STATE_OK}),
    (sc.METRIC_HW_GPU_IO, "counter", "By", {**_GPU, sc.NETWORK_IO_DIRECTION: sc.DIRECTION_RECEIVE}),
    (sc.METRIC_HW_FAN_SPEED_RATIO, "gauge", "1", {**_SENSOR, sc.HW_TYPE: sc.HW_TYPE_FAN}),
    (
        sc.METRIC_HW_TEMPERATURE,
        "gauge",
        "Cel",
        {**_SENSOR, sc.HW_TYPE: sc.HW_TYPE_TEMPERATURE, sc.HW_SENSOR_LOCATION: sc.SENSOR_MEMORY},
    ),
    (sc.METRIC_HW_GPU_CLOCK, "gauge", "Hz", {**_GPU, sc.HW_GPU_CLOCK_DOMAIN: sc.CLOCK_SM}),
    (sc.METRIC_HW_GPU_THROTTLE, "gauge", sc.UNIT_DIMENSIONLESS, {**_GPU, sc.HW_GPU_THROTTLE_REASON: "sw_power_cap"}),
    (sc.METRIC_HW_GPU_POWER_LIMIT, "gauge", "W", _GPU),
    (sc.METRIC_HW_GPU_PCIE_REPLAYS, "counter", "{replay}", _GPU),
    (sc.METRIC_HW_GPU_NVLINK_IO, "counter", "By", {**_GPU, sc.NETWORK_IO_DIRECTION: sc.DIRECTION_TRANSMIT}),
    (sc.METRIC_HW_GPU_XID_ERRORS, "counter", "{error}", {**_GPU, sc.HW_GPU_XID_CODE: "79"}),
    (sc.METRIC_HW_GPU_SM_ACTIVITY, "gauge", "1", _GPU),
    (sc.METRIC_HW_GPU_SM_OCCUPANCY, "gauge", "1", _GPU),
    (sc.METRIC_HW_GPU_TENSOR_ACTIVITY, "gauge", "1", _GPU),
    (sc.METRIC_HW_GPU_DRAM_ACTIVITY, "gauge", "1", _GPU),
    (sc.METRIC_GPU_PROCESS_UTILIZATION, "gauge", "1", {**_GPU, "process.pid": 1234}),
    (sc.METRIC_HW_GPU_INFO, "gauge", sc.UNIT_DIMENSIONLESS, _GPU_INFO),
]


def record_all(provider: MeterProvider) -> None:
    """Record one value on each instrument of INSTRUMENTS."""
    meter = provider.get_meter("otel_ml.names_check", "1.0")
    for name, kind, unit, attrs in INSTRUMENTS:
        if kind == "histogram":
            meter.create_histogram(name, unit=unit).record(0.5, attrs)
        elif kind == "counter":
            meter.create_counter(name, unit=unit).add(2, attrs)
        elif kind == "updowncounter":
            meter.create_up_down_counter(name, unit=unit).add(1, attrs)
        else:
            meter.create_gauge(name, unit=unit).set(0.25, attrs)


def embedded_series() -> set[tuple[str, frozenset[str]]]:
    """(series name, label names) as Prometheus stores them from otel_ml's embedded endpoint."""
    from otel_ml.distro.endpoint import OtelMLPrometheusMetricReader

    reader = OtelMLPrometheusMetricReader(port=0, start_server=False)
    provider = MeterProvider(resource=RESOURCE, metric_readers=[reader])
    try:
        record_all(provider)
        found = set()
        for family in reader.registry.collect():
            for sample in family.samples:
                # target_info holds the resource, not the run: compared series are the metrics.
                if not sample.name.endswith("_created") and sample.name != "target_info":
                    # Prometheus stores no empty label (otel_scope_schema_url="").
                    found.add((sample.name, frozenset(k for k, v in sample.labels.items() if v)))
        return found
    finally:
        provider.shutdown()


def send_to_collector(endpoint: str) -> None:
    """Record the same points and push them once over OTLP gRPC."""
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=endpoint, insecure=True), export_interval_millis=3_600_000
    )
    provider = MeterProvider(resource=RESOURCE, metric_readers=[reader])
    record_all(provider)
    provider.force_flush()
    provider.shutdown()
