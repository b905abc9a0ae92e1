"""Every file under collector/ is exercised: configs validated and run, dashboard and compose checked.

The single-node config is run end to end in test_collector_e2e.py; here the
agent -> gateway chain and the remote-write gateway run with real processes
and must give the embedded endpoint's series and label names too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import _collector_names as names
from tests._collector_procs import (
    COLLECTOR_DIR,
    DASHBOARD,
    Collector,
    require_collector,
    series_names,
    wait_for,
)
from tests._prometheus import Prometheus

CONFIGS = ("otel-collector.yaml", "agent.yaml", "gateway.yaml", "gateway-remotewrite.yaml")


def _comparable(found: set[tuple[str, frozenset[str]]]) -> set[tuple[str, frozenset[str]]]:
    return {
        (name, labels - {"job", "instance"})
        for name, labels in found
        if not name.endswith("_created") and not name.startswith(("ALERTS", "target_info"))
    }


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


@pytest.mark.parametrize("config", CONFIGS)
def test_config_validates(config: str) -> None:
    binary = require_collector()
    proc = subprocess.run(
        [str(binary), "validate", "--config", str(COLLECTOR_DIR / config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    text = (COLLECTOR_DIR / config).read_text()
    # Bound to loopback unless overridden; deprecated component names are not used.
    assert "0.0.0.0" not in text.replace("OTELCOL_OTLP_GRPC_ENDPOINT=0.0.0.0", "")
    assert "otlphttp" not in text and "prometheusremotewrite:" not in text


def test_build_is_cached() -> None:
    require_collector()
    if shutil.which("go") is None:
        pytest.skip("Go is not installed: collector/build.sh cannot check its stamp")
    proc = subprocess.run(
        ["bash", str(COLLECTOR_DIR / "build.sh")], capture_output=True, text=True, check=False, timeout=1800
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # A second call right after is a no-op.
    again = subprocess.run(
        ["bash", str(COLLECTOR_DIR / "build.sh")], capture_output=True, text=True, check=False, timeout=60
    )
    assert "is up to date" in again.stdout, again.stdout + again.stderr


def test_agent_forwards_to_gateway_with_identical_names(workdir: Path) -> None:
    require_collector()
    gateway = Collector(workdir, COLLECTOR_DIR / "gateway.yaml")
    agent = Collector(
        workdir,
        COLLECTOR_DIR / "agent.yaml",
        extra_env={"OTELCOL_GATEWAY_ENDPOINT": f"127.0.0.1:{gateway.grpc_port}"},
        serves_metrics=False,
    )
    gateway.start()
    try:
        agent.start()
        try:
            expected = names.embedded_series()
            names.send_to_collector(agent.otlp_endpoint)
            url = f"http://127.0.0.1:{gateway.prom_port}/metrics"

            def scraped() -> set[tuple[str, frozenset[str]]]:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    text = resp.read().decode()
                found = {
                    (s.name, frozenset(k for k, v in s.labels.items() if v))
                    for family in text_string_to_metric_families(text)
                    for s in family.samples
                    if s.labels.get("ml_run_name") == names.RUN
                }
                return found if len(found) >= len(expected) else set()

            got = _comparable(wait_for(scraped, 20, "the reference series on the gateway"))
            assert got == expected, (sorted(got - expected), sorted(expected - got))
        finally:
            agent.stop()
    finally:
        gateway.stop()


def test_remote_write_gateway_gives_identical_names(workdir: Path) -> None:
    require_collector()
    prometheus = Prometheus.bundled(workdir, 1, "--web.enable-remote-write-receiver")
    prometheus.start()
    try:
        gateway = Collector(
            workdir,
            COLLECTOR_DIR / "gateway-remotewrite.yaml",
            extra_env={"OTELCOL_REMOTE_WRITE_URL": f"{prometheus.url}/api/v1/write"},
            serves_metrics=False,
        )
        gateway.start()
        try:
            expected = names.embedded_series()
            names.send_to_collector(gateway.otlp_endpoint)
            match = f'{{ml_run_name="{names.RUN}"}}'
            got = wait_for(
                lambda: (s := set(series_names(prometheus, match))) and len(s) >= len(expected) and s,
                30,
                "the reference series written to Prometheus",
            )
            got = _comparable(got)
            assert got == expected, (sorted(got - expected), sorted(expected - got))
        finally:
            gateway.stop()
    finally:
        prometheus.stop()


def test_dashboard_has_the_variables_panels_and_exemplar_links() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == {"job", "run", "model", "gpu"}
    titles = {p["title"]: p for p in dashboard["panels"] if p["type"] != "row"}
    for title in (
        "Loss per run",
        "Step time p50 / p95 (exemplars link to traces)",
        "Samples per second",
        "Learning rate",
        "Anomalies (NaN loss, loss spikes)",
        "GPU utilisation against loss",
        "GPU memory used / limit",
        "GPU power",
        "GPU temperature",
        "Inference latency p95",
        "Inference error rate",
        "Inference runs in flight",
    ):
        assert title in titles, title
    step = titles["Step time p50 / p95 (exemplars link to traces)"]["targets"]
    assert [t.get("exemplar") for t in step] == [True, True]
    assert ["0.5" in step[0]["expr"], "0.95" in step[1]["expr"]] == [True, True]
    datasources = (COLLECTOR_DIR / "grafana" / "provisioning" / "datasources" / "otel-ml.yaml").read_text()
    assert "exemplarTraceIdDestinations:" in datasources and "- name: trace_id" in datasources
    assert "datasourceUid: tempo" in datasources and "uid: tempo" in datasources
    provider = (COLLECTOR_DIR / "grafana" / "provisioning" / "dashboards" / "otel-ml.yaml").read_text()
    assert "path: /var/lib/grafana/dashboards" in provider


def test_compose_file_wires_the_stack() -> None:
    compose = COLLECTOR_DIR / "docker-compose.yaml"
    text = compose.read_text()
    for needle in (
        "--enable-feature=exemplar-storage",
        "./grafana/provisioning:/etc/grafana/provisioning",
        "./grafana/dashboards:/var/lib/grafana/dashboards",
        "./otel-collector.yaml:/etc/otelcol/config.yaml",
        "./tempo/tempo.yaml:/etc/tempo.yaml",
    ):
        assert needle in text, needle
    for mounted in ("grafana/provisioning", "grafana/dashboards", "otel-collector.yaml", "tempo/tempo.yaml"):
        assert (COLLECTOR_DIR / mounted).exists(), mounted
    docker = shutil.which("docker")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False) if docker else None
    if probe is None or probe.returncode != 0:
        pytest.skip("the docker compose plugin is not installed: `docker compose config` not run")
    proc = subprocess.run(
        [docker, "compose", "-f", str(compose), "config", "--quiet"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr


def test_dashboard_has_the_model_quality_and_serving_row() -> None:
    """The row for otel_ml.serving reads the series the helpers export, under their documented names."""
    dashboard = json.loads(DASHBOARD.read_text())
    titles = {p["title"]: p for p in dashboard["panels"]}
    assert titles["Model quality and serving (otel_ml.serving)"]["type"] == "row"
    expected = {
        "Model accuracy (1h)": "ml_model_outcomes_total",
        "Recall per class (1h)": "ml_truth_label",
        "Prediction distribution": "ml_model_predictions_total",
        "Queue wait p95 vs run p95": "ml_inference_queue_duration_seconds_bucket",
        "Requests waiting for a predictor": "ml_inference_queue_waiting",
        "Model load time": "ml_model_load_duration_seconds_count",
        "Process CPU and memory": "process_memory_usage_bytes",
        "Process threads and GC": "cpython_gc_collections_total",
    }
    for title, series in expected.items():
        assert any(series in target["expr"] for target in titles[title]["targets"]), title
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
