"""Every environment value otel_ml reads, its own or a standard one it passes on: one ERROR line and the default.

Never an exception: ``instrument()`` must not raise for a deployment typo, and
under ``opentelemetry-instrument`` a bad value must not switch telemetry off.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otel_ml.distro import _resource, _sdk, _sdk_env
from otel_ml.distro._private_random import PrivateRandomIdGenerator
from otel_ml.distro.endpoint._slow_steps import SLOW_STEP_BUFFER
from otel_ml.gpu import _nvml
from tests import _net


@pytest.fixture(autouse=True)
def _fresh_reads() -> Iterator[None]:
    _sdk_env.forget()
    yield
    _sdk_env.forget()


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_25_digit_slow_step_buffer_is_one_error_and_the_default(monkeypatch, caplog) -> None:
    monkeypatch.setenv("OTEL_ML_SLOW_STEP_BUFFER", "1" * 25)
    with caplog.at_level(logging.ERROR):
        assert SLOW_STEP_BUFFER.resolve(None) == 256
    assert errors(caplog) == [
        f"OTEL_ML_SLOW_STEP_BUFFER='{'1' * 25}' is invalid: expected a whole number >= 1 and <= 100000; "
        "using the default 256"
    ]


def test_a_bogus_id_generator_is_one_error_and_otel_mls_ids(monkeypatch, caplog) -> None:
    monkeypatch.setenv("OTEL_PYTHON_ID_GENERATOR", "bogus")
    with caplog.at_level(logging.ERROR):
        assert isinstance(_sdk._id_generator(), PrivateRandomIdGenerator)
    (message,) = errors(caplog)
    assert message.startswith("OTEL_PYTHON_ID_GENERATOR='bogus' is invalid: expected one of random")


@pytest.mark.parametrize(
    "config",
    [
        '{"task": {"type": "worker", "index": Infinity}}',
        '{"task": {"type": "worker", "index": 1e400}}',
        '{"task": {"type": "worker", "index": -1}}',
        '{"task": {"type": "worker", "index": 1.5}}',
        '{"task": {"type": "worker", "index": 99999999999999999999999999}}',
        '{"task": {"type": "", "index": 0}}',
        '{"task": [1]}',
        "[" * 100_000,
    ],
)
def test_a_malformed_tf_config_is_one_error_and_no_worker_identity(config, caplog) -> None:
    with caplog.at_level(logging.ERROR):
        assert _resource.worker_resource_attributes({"TF_CONFIG": config}) == {}
    (message,) = errors(caplog)
    assert message.startswith("TF_CONFIG is not valid JSON of the form")


def test_bad_otlp_timeout_and_compression_give_the_sdk_defaults_once_for_both_signals(monkeypatch, caplog) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{_net.free_port()}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "abc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "bogus")
    with caplog.at_level(logging.ERROR):
        (reader,) = _sdk.metric_readers()
        processor, _slow = _sdk.span_processors()
    try:
        assert errors(caplog) == [
            "OTEL_EXPORTER_OTLP_TIMEOUT='abc' is invalid: expected a number > 0 and <= 600; using the default 10.0",
            "OTEL_EXPORTER_OTLP_COMPRESSION='bogus' is invalid: expected one of deflate, gzip, none; "
            "using the default 'none'",
        ]
        assert isinstance(reader, PeriodicExportingMetricReader) and isinstance(processor, BatchSpanProcessor)
        for exporter in (reader._exporter, processor.span_exporter):
            assert exporter._timeout == 10.0
            # The gRPC exporters before 1.39 hand compression to the channel and keep no copy.
            compression = getattr(exporter, "_compression", None)
            assert compression is None or compression.name == "NoCompression"
    finally:
        reader.shutdown(timeout_millis=100)
        processor.shutdown()


def test_a_bogus_otlp_protocol_is_one_error_and_grpc(monkeypatch, caplog) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "1e400")
    with caplog.at_level(logging.ERROR):
        (reader,) = _sdk.metric_readers()
    try:
        assert errors(caplog) == [
            "OTEL_EXPORTER_OTLP_PROTOCOL='carrier-pigeon' is invalid: expected one of grpc, http/protobuf; "
            "using the default 'grpc'",
            "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT='1e400' is invalid: expected a number > 0 and <= 600; "
            "using the default 10.0",
        ]
        assert type(reader._exporter).__module__.startswith("opentelemetry.exporter.otlp.proto.grpc")
    finally:
        reader.shutdown(timeout_millis=100)


def test_bad_batch_and_limit_values_give_the_sdk_defaults(monkeypatch, caplog) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "abc")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "1e400")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "9" * 21)
    monkeypatch.setenv("OTEL_ATTRIBUTE_COUNT_LIMIT", "abc")
    monkeypatch.setenv("OTEL_SPAN_EVENT_COUNT_LIMIT", "64")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "-5")
    with caplog.at_level(logging.ERROR):
        assert _sdk_env.batch_span_processor() == {
            "max_queue_size": 2048,
            "schedule_delay_millis": 5000,
            "max_export_batch_size": 512,
        }
        limits = _sdk_env.span_limits()
        assert _sdk_env.periodic_reader() == {"export_interval_millis": 60000}
    assert (limits.max_attributes, limits.max_span_attributes, limits.max_events) == (128, 128, 64)
    assert limits.max_attribute_length is None
    assert [m.split("=")[0] for m in errors(caplog)] == [
        "OTEL_BSP_MAX_QUEUE_SIZE",
        "OTEL_BSP_SCHEDULE_DELAY",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        "OTEL_ATTRIBUTE_COUNT_LIMIT",
        "OTEL_METRIC_EXPORT_INTERVAL",
    ]


def test_a_batch_larger_than_the_queue_is_capped_at_the_queue(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "100")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "500")
    assert _sdk_env.batch_span_processor() == {"max_queue_size": 100, "max_export_batch_size": 100}


def test_a_module_that_is_not_nvml_is_one_error_and_the_default(monkeypatch, caplog) -> None:
    monkeypatch.setenv("OTEL_ML_GPU_NVML_MODULE", "json")
    monkeypatch.setitem(sys.modules, "pynvml", None)  # the default is then "not installed": GPU metrics off
    with caplog.at_level(logging.INFO, logger="otel_ml"):
        assert _nvml.load() is None
    assert errors(caplog) == [
        "OTEL_ML_GPU_NVML_MODULE='json' is invalid: expected a module with NVML's API (nvmlInit, NVMLError), "
        "such as pynvml; using the default"
    ]


def test_a_bogus_exemplar_filter_is_one_error_and_trace_based(monkeypatch, caplog) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXEMPLAR_FILTER", "bogus")
    with caplog.at_level(logging.ERROR):
        (exemplar_filter,) = _sdk_env.meter_provider().values()
    assert type(exemplar_filter).__name__ == "TraceBasedExemplarFilter"
    assert errors(caplog) == [
        "OTEL_METRICS_EXEMPLAR_FILTER='bogus' is invalid: expected one of always_off, always_on, trace_based; "
        "using the default 'trace_based'"
    ]


def test_many_unknown_exporter_names_are_one_error(monkeypatch, caplog) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", ",".join(f"typo{i}" for i in range(10)) + ",none,typo0")
    with caplog.at_level(logging.ERROR):
        assert _sdk._exporter_names("traces") == []
    (message,) = errors(caplog)
    assert message.startswith(
        "OTEL_TRACES_EXPORTER names 'typo0', 'typo1', 'typo2', 'typo3', 'typo4', 'typo5', 'typo6', 'typo7', ..., "
        "which are not installed traces exporters; accepted: console, none, otlp,"
    )
    assert message.endswith("They are skipped.")


BAD_VALUES = {
    "OTEL_ML_SLOW_STEP_BUFFER": "1" * 25,
    "OTEL_PYTHON_ID_GENERATOR": "bogus",
    "TF_CONFIG": '{"task": {"type": "worker", "index": Infinity}}',
    "OTEL_EXPORTER_OTLP_TIMEOUT": "abc",
    "OTEL_EXPORTER_OTLP_COMPRESSION": "bogus",
    "OTEL_ML_GPU_NVML_MODULE": "json",
    "OTEL_BSP_MAX_QUEUE_SIZE": "abc",
    "OTEL_ATTRIBUTE_COUNT_LIMIT": "abc",
    "OTEL_METRICS_EXEMPLAR_FILTER": "bogus",
}

PROGRAM = """
import json, logging, sys, urllib.request
logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(message)s")
import otel_ml
otel_ml.instrument()
from opentelemetry import metrics, trace
metrics.get_meter("faults").create_counter("faults.writes").add(3)
with trace.get_tracer("faults").start_as_current_span("s") as span:
    sampled = span.get_span_context().trace_flags.sampled
url = otel_ml.distro.endpoint.embedded_url()
body = urllib.request.urlopen(url, timeout=5).read().decode()
served = [line.split()[-1] for line in body.splitlines() if line.startswith("faults_writes_total")]
print(json.dumps({"sampled": sampled, "served": served}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["instrument()", "opentelemetry-instrument"])
def test_all_bad_values_at_once_keep_telemetry_on(entry, tmp_path) -> None:
    env = {
        **BAD_VALUES,
        "OTEL_METRICS_EXPORTER": "otel_ml_prometheus",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{_net.free_port()}",
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(_net.free_port()),
        "OTEL_ML_EXIT_TIMEOUT": "0.5",
    }
    prefix = [str(_net.BIN / "opentelemetry-instrument")] if entry == "opentelemetry-instrument" else []
    done = subprocess.run(
        [*prefix, sys.executable, "-c", PROGRAM],
        env={**os.environ, **env, "PYTHONPATH": str(_net.ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"sampled": True, "served": ["3.0"]}
    assert "Traceback" not in done.stderr and "Failed to auto initialize" not in done.stderr
    # Under opentelemetry-instrument the SDK is set up before the program configures logging:
    # those lines come through Python's last-resort handler, without the level.
    lines = [line.removeprefix("ERROR ") for line in done.stderr.splitlines()]
    for variable in BAD_VALUES:
        start = "TF_CONFIG is not valid" if variable == "TF_CONFIG" else f"{variable}="
        assert len([line for line in lines if line.startswith(start)]) == 1, (variable, done.stderr)


def test_a_misspelt_otel_ml_variable_is_one_warning_naming_the_closest(telemetry, monkeypatch, caplog) -> None:
    import otel_ml
    from otel_ml.distro import _env_check

    monkeypatch.setenv("OTEL_ML_SLOW_STEP_SECOND", "0.5")
    monkeypatch.setenv("OTEL_ML_EXIT_TIMOUT", "1")
    monkeypatch.setenv("OTEL_ML_REQUIRE_COLLECTOR", "1")  # a CI script's own: close to none of otel_ml's
    monkeypatch.setattr(_env_check, "_checked", False)
    providers = {"meter_provider": telemetry.meter_provider, "tracer_provider": telemetry.tracer_provider}
    with caplog.at_level(logging.WARNING):
        otel_ml.instrument(**providers)
        otel_ml.uninstrument()
        otel_ml.instrument(**providers)  # once per process, not once per call
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "otel_ml: OTEL_ML_EXIT_TIMOUT is set but is not a variable otel_ml reads; did you mean OTEL_ML_EXIT_TIMEOUT?",
        "otel_ml: OTEL_ML_SLOW_STEP_SECOND is set but is not a variable otel_ml reads; did you mean "
        "OTEL_ML_SLOW_STEP_SECONDS?",
    ]


def test_every_variable_otel_ml_reads_is_known_to_the_check() -> None:
    """The check's list is environment_variables.py, which test_options ties to every Option: no false warning."""
    from otel_ml.distro._env_check import known

    read = set()
    for path in _net.ROOT.joinpath("otel_ml").rglob("*.py"):
        if path.name == "_env_check.py":
            continue  # its docstring's examples are misspelt on purpose
        read |= set(__import__("re").findall(r"\bOTEL_ML_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
    assert read - {"OTEL_ML_NOT_SET_ANYWHERE"} <= known()
