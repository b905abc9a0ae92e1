"""Bytes that are not UTF-8 in names from outside never make a scrape fail, and one bad metric never hides the rest."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from otel_ml._core.text import valid_label
from otel_ml.distro.endpoint import OtelMLPrometheusMetricReader
from tests import _net

ROOT = Path(__file__).resolve().parents[2]

PROGRAM = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    import otel_ml
    from opentelemetry import metrics

    otel_ml.instrument()
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    with otel_ml.run(os.fsdecode(b"caf\\xe9")):
        model.fit(np.zeros((32, 4)), np.zeros((32, 1)), batch_size=8, epochs=1, verbose=0)
    counter = metrics.get_meter("program").create_counter("program.files")
    counter.add(3, {"path": os.fsdecode(b"/data/\\xe9t\\xe9"), "lone": "\\ud800"})
    print("ready", flush=True)
    sys.stdin.readline()
    """
)


@pytest.mark.parametrize(
    ("given", "valid"),
    [
        ("café", "café"),
        (os.fsdecode(b"caf\xe9"), "caf\\xe9"),
        (os.fsdecode(b"\xff"), "\\xff"),
        (os.fsdecode("été/".encode() + b"\xe9"), "été/\\xe9"),
        ("\ud800x", "\\ud800x"),
        (7, "7"),
    ],
)
def test_valid_label_keeps_valid_text_and_escapes_undecodable_bytes(given, valid) -> None:
    assert valid_label(given) == valid
    valid_label(given).encode("utf-8")


@pytest.mark.slow
def test_service_and_run_names_that_are_not_utf8_scrape_200_with_every_series(tmp_path) -> None:
    port = _net.free_port()
    env = {
        **os.environb,
        b"PYTHONPATH": str(ROOT).encode(),
        b"OTEL_SERVICE_NAME": b"\xff",
        b"OTEL_EXPORTER_PROMETHEUS_PORT": str(port).encode(),
        b"OTEL_METRICS_EXPORTER": b"otel_ml_prometheus",
        b"OTEL_TRACES_EXPORTER": b"none",
        b"TF_CPP_MIN_LOG_LEVEL": b"2",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", PROGRAM], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        url = f"http://127.0.0.1:{port}/metrics"
        for accept in (None, "application/openmetrics-text; version=1.0.0"):
            status, _, body = _net.get(url, accept=accept)
            assert status == 200
        families = {family.name: family for family in text_string_to_metric_families(body)}
        (info,) = families["target"].samples
        assert info.labels["service_name"] == "\\xff"
        steps = [s for s in families["ml_train_steps"].samples if s.name == "ml_train_steps_total"]
        assert [(s.labels["ml_run_name"], s.value) for s in steps] == [("caf\\xe9", 4.0)]
        (files,) = [s for s in families["program_files"].samples if s.name == "program_files_total"]
        assert (files.labels["path"], files.labels["lone"], files.value) == ("/data/\\xe9t\\xe9", "\\ud800", 3.0)
    finally:
        _net.stop(proc)  # type: ignore[arg-type]


def test_one_metric_that_cannot_be_rendered_leaves_the_others_and_warns_once(caplog) -> None:
    reader = OtelMLPrometheusMetricReader(port=0, start_server=False)
    provider = MeterProvider(metric_readers=[reader])
    provider.get_meter("good").create_counter("good.count").add(5)
    broken = Metric(
        name="broken.histogram",
        description="",
        unit="s",
        data=Histogram(
            data_points=[
                HistogramDataPoint(
                    attributes={},
                    start_time_unix_nano=0,
                    time_unix_nano=1,
                    count=1,
                    sum=1.0,
                    bucket_counts=None,  # type: ignore[arg-type]
                    explicit_bounds=[1.0],
                    min=1.0,
                    max=1.0,
                )
            ],
            aggregation_temporality=2,  # type: ignore[arg-type]
        ),
    )
    scope = ScopeMetrics(InstrumentationScope("broken"), [broken], "")
    extra = MetricsData([ResourceMetrics(Resource.create({}), [scope], "")])
    try:
        for _ in range(2):
            reader._collector.add_metrics_data(extra)
            text = generate_latest(reader.registry).decode()
            assert "good_count_total{" in text and "broken_histogram" not in text
        warnings = [r.getMessage() for r in caplog.records if "broken.histogram" in r.getMessage()]
        assert warnings == [
            "otel_ml: /metrics leaves out 'broken.histogram', which cannot be rendered "
            "(TypeError: 'NoneType' object is not iterable)"
        ]
    finally:
        provider.shutdown()
