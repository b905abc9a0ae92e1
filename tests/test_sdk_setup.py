"""SDK set-up shared by the configurator and instrument(): resource, ids, exporters, log flood."""

from __future__ import annotations

import logging
import random

from otel_ml.distro import _resource, _sampling, _sdk, _sdk_env
from otel_ml.distro._log_limit import RepeatFilter
from otel_ml.distro._private_random import PrivateRandomIdGenerator


def test_trace_ids_do_not_repeat_when_the_program_seeds_random() -> None:
    generator = PrivateRandomIdGenerator()
    random.seed(7)
    first = (generator.generate_trace_id(), generator.generate_span_id())
    random.seed(7)
    second = (generator.generate_trace_id(), generator.generate_span_id())
    assert first != second
    assert first[0] > 0 and first[1] > 0


def test_a_forked_child_draws_other_ids_than_its_parent() -> None:
    import os

    generator = PrivateRandomIdGenerator()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, then exit at once
        os.write(write, generator.generate_trace_id().to_bytes(16, "big"))
        os._exit(0)
    os.close(write)
    child = int.from_bytes(os.read(read, 16), "big")
    os.close(read)
    assert os.waitpid(pid, 0)[1] == 0
    assert child != generator.generate_trace_id() and child > 0


def test_worker_identity_comes_from_tf_config(caplog) -> None:
    config = '{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}'
    assert _resource.worker_resource_attributes({"TF_CONFIG": config}) == {
        "ml.worker.type": "worker",
        "ml.worker.index": 1,
    }
    assert _resource.worker_resource_attributes({}) == {}
    with caplog.at_level(logging.ERROR):
        assert _resource.worker_resource_attributes({"TF_CONFIG": "{not json"}) == {}
    assert "TF_CONFIG is not valid JSON" in caplog.text


def test_unknown_exporter_is_one_clear_error_and_skipped(monkeypatch, caplog) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus_typo")
    with caplog.at_level(logging.ERROR):
        assert _sdk.metric_readers() == []
    (record,) = caplog.records
    message = record.getMessage()
    assert "OTEL_METRICS_EXPORTER names 'prometheus_typo'" in message
    assert "otel_ml_prometheus" in message and "otlp_proto_grpc" in message and "none" in message


def test_trace_exporter_defaults_follow_the_otlp_endpoint(monkeypatch) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert _sdk._exporter_names("traces") == []
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    assert _sdk._exporter_names("traces") == ["otlp"]
    monkeypatch.delenv("OTEL_METRICS_EXPORTER", raising=False)
    assert _sdk._exporter_names("metrics") == ["otel_ml_prometheus"]
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    assert _sdk._exporter_names("metrics") == []


def test_repeated_export_failures_log_once_then_report_the_count() -> None:
    repeat = RepeatFilter(interval=60)
    records = [
        logging.LogRecord("opentelemetry.exporter.x", logging.ERROR, __file__, 1, "Failed to export %s", ("m",), None)
        for _ in range(5)
    ]
    assert [repeat.filter(r) for r in records] == [True, False, False, False, False]
    repeat.interval = 0  # the window has passed: the next one goes through, with the count
    later = logging.LogRecord(
        "opentelemetry.exporter.x", logging.ERROR, __file__, 1, "Failed to export %s", ("m",), None
    )
    assert repeat.filter(later)
    assert later.getMessage() == "Failed to export m (4 similar messages suppressed in the last 0 s)"


def test_stable_http_conventions_are_the_default_unless_the_user_chose() -> None:
    environ: dict[str, str] = {}
    _sdk_env.default_http_semconv(environ)
    assert environ == {"OTEL_SEMCONV_STABILITY_OPT_IN": "http"}
    chosen = {"OTEL_SEMCONV_STABILITY_OPT_IN": "http/dup"}
    _sdk_env.default_http_semconv(chosen)
    assert chosen == {"OTEL_SEMCONV_STABILITY_OPT_IN": "http/dup"}
    empty = {"OTEL_SEMCONV_STABILITY_OPT_IN": ""}  # set, even if empty: the user's choice (the old conventions)
    _sdk_env.default_http_semconv(empty)
    assert empty == {"OTEL_SEMCONV_STABILITY_OPT_IN": ""}


def test_without_a_trace_exporter_only_slow_spans_are_sampled(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from otel_ml.distro._sampling import SlowSpansOnly
    from otel_ml.distro.endpoint import SlowStepBuffer

    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    buffer = SlowStepBuffer(4)
    assert isinstance(_sampling.sampler_for([buffer]), SlowSpansOnly)
    assert _sampling.sampler_for([object(), buffer]) is None  # an exporter keeps spans: the SDK's default sampler
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    assert _sampling.sampler_for([buffer]) is None  # the user's choice wins


def test_otlp_retry_jitter_never_draws_from_the_programs_random(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import sys

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    built = [_sdk._build(name, "traces", _sdk._span_processor) for name in ("otlp_proto_grpc", "otlp_proto_http")]
    for processor in built:
        assert processor is not None
        processor.shutdown()  # type: ignore[attr-defined]
    exporters = {n: m for n, m in sys.modules.items() if n.startswith("opentelemetry.exporter.otlp")}
    assert not [name for name, module in exporters.items() if getattr(module, "random", None) is random]
    # The exporter modules that jitter their retries (which ones depends on the release).
    jittering = [m for m in exporters.values() if isinstance(getattr(m, "random", None), random.Random)]
    random.seed(7)
    expected = random.random()
    random.seed(7)
    for module in jittering:
        module.random.uniform(0.8, 1.2)  # what a retry draws
    assert random.random() == expected
