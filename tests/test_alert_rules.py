"""The bundled alert rules: valid, and proven by promtool unit tests.

collector/prometheus/rules/otel-ml.tests.yml feeds each alert a series that
must trigger it and a healthy one that must not; promtool fails on any
difference in the set of firing alerts, their labels or their annotations.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
import yaml

from otel_ml._core.buckets import DURATION_BUCKETS_SECONDS
from otel_ml.serving._http import DURATION_BUCKETS as HTTP_DURATION_BUCKETS
from tests._collector_procs import COLLECTOR_DIR, REQUIRE_ENV, RULES

RULE_TESTS = RULES.with_name("otel-ml.tests.yml")
ALERTS = (
    "TrainingLossNaN",
    "TrainingLossSpike",
    "TrainingStalled",
    "TrainingAccuracyDrop",
    "TrainingStepTimeRegression",
    "TrainingStraggler",
    "TrainingInputBound",
    "InferenceLatencyHigh",
    "InferenceErrorRateHigh",
    "GPUUnderutilized",
    "GPUMemoryNearFull",
    "GPUThrottled",
    "ModelAccuracyLow",
    "HttpServerErrorRateHigh",
    "HttpClientErrorRateHigh",
    "CollectorDroppingData",
    "CollectorRefusingData",
    "CollectorSpooling",
)
THRESHOLDS = 15


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        reason = "promtool is not installed (Debian package prometheus; scripts/test.sh installs it)"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
        pytest.skip(reason)
    return path


def _run(*cmd: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=COLLECTOR_DIR, check=False, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_rules_are_valid(promtool: str) -> None:
    out = _run(promtool, "check", "rules", str(RULES))
    # Every threshold constant and every alert of the file, none dropped.
    rules = RULES.read_text()
    count = len(re.findall(r"^\s+- record: ", rules, re.M)) + len(re.findall(r"^\s+- alert: ", rules, re.M))
    assert count == THRESHOLDS + len(ALERTS)
    assert f"SUCCESS: {count} rules found" in out


def test_every_alert_fires_on_its_trigger_and_stays_silent_when_healthy(promtool: str) -> None:
    out = _run(promtool, "test", "rules", str(RULE_TESTS))
    assert "SUCCESS" in out
    tests = RULE_TESTS.read_text()
    for alert in ALERTS:
        # Each alert has a case that expects it to fire (exp_alerts) ...
        assert re.search(rf"alertname: {alert}\n\s+exp_alerts:", tests), alert
    # ... and every case lists the complete set of expected alerts, so the
    # healthy series in it are asserted silent; some cases also assert an
    # evaluation time where nothing fires.
    assert len(re.findall(r"alertname: \w+\n(?!\s+exp_alerts)", tests)) >= 6


def test_alert_names_and_annotations_are_the_documented_ones() -> None:
    rules = RULES.read_text()
    assert sorted(re.findall(r"- alert: (\w+)", rules)) == sorted(ALERTS)
    assert rules.count("summary:") == len(ALERTS)
    assert rules.count("description:") == len(ALERTS)
    # Thresholds are recorded constants: the first group's, and the GPU-health group's own.
    thresholds = re.findall(r"record: otel_ml:threshold:(\w+)", rules)
    assert len(thresholds) == THRESHOLDS
    for name in thresholds:
        assert f"scalar(otel_ml:threshold:{name})" in rules, name


def test_prometheus_config_is_valid(promtool: str) -> None:
    out = _run(promtool, "check", "config", str(COLLECTOR_DIR / "prometheus" / "prometheus.yml"))
    assert "is valid prometheus config file syntax" in out


def test_for_durations_follow_the_documented_review() -> None:
    """The `for:` of each alert, as reviewed in docs/alerting.md (fault to notification)."""
    rules = RULES.read_text()
    found = {}
    for block in re.split(r"\n\s+- alert: ", rules)[1:]:
        name = block.split("\n", 1)[0]
        match = re.search(r"^\s+for: (\w+)$", block, re.M)
        found[name] = match.group(1) if match else None
    assert found == {
        "TrainingLossNaN": None,
        "TrainingLossSpike": "2m",
        "TrainingStalled": "1m",
        "TrainingAccuracyDrop": None,
        "TrainingStepTimeRegression": "5m",
        "TrainingStraggler": "5m",
        "TrainingInputBound": "5m",
        "InferenceLatencyHigh": "5m",
        "InferenceErrorRateHigh": "10m",
        "GPUUnderutilized": "15m",
        "GPUMemoryNearFull": "5m",
        "GPUThrottled": "5m",
        "ModelAccuracyLow": "10m",
        "HttpServerErrorRateHigh": "5m",
        "HttpClientErrorRateHigh": "5m",
        "CollectorDroppingData": None,
        "CollectorRefusingData": "2m",
        "CollectorSpooling": "1m",
    }


def test_model_accuracy_alert_has_promtool_cases() -> None:
    """ModelAccuracyLow reads the inference quality counters (otel_ml.serving.ModelQuality)."""
    rules = RULES.read_text()
    assert "- alert: ModelAccuracyLow" in rules
    tests = RULE_TESTS.read_text()
    assert re.search(r"alertname: ModelAccuracyLow\n\s+exp_alerts:", tests)
    assert re.search(r"alertname: ModelAccuracyLow\n(?!\s+exp_alerts)", tests)


def test_the_documented_gpu_identity_joins_are_the_promtool_tested_ones() -> None:
    # docs/gpu.md's PromQL for the GPU identity (on hw_gpu_info) is checked by promtool: each line is an expr.
    readme = (COLLECTOR_DIR.parent / "docs" / "gpu.md").read_text()
    queries = [q for block in re.findall(r"```promql\n(.*?)```", readme, re.S) for q in block.splitlines()]
    assert len(queries) == 3
    tests = RULE_TESTS.read_text()
    for query in queries:
        assert f"- expr: {query}\n" in tests, query


# The bucket boundaries otel_ml declares for each histogram a rule may read, by Prometheus name.
DECLARED_BUCKETS = {
    "ml_inference_duration_seconds": DURATION_BUCKETS_SECONDS,
    "ml_inference_queue_duration_seconds": DURATION_BUCKETS_SECONDS,
    "ml_model_load_duration_seconds": DURATION_BUCKETS_SECONDS,
    "ml_train_step_duration_seconds": DURATION_BUCKETS_SECONDS,
    "http_server_request_duration_seconds": HTTP_DURATION_BUCKETS,
    "http_server_request_queue_duration_seconds": DURATION_BUCKETS_SECONDS,
}


def test_every_latency_threshold_is_a_bucket_boundary_of_the_histogram_it_reads() -> None:
    """Inside a bucket histogram_quantile interpolates: a 2 s threshold in the 1-2.5 s bucket fired on 1.2 s runs."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    constants = {
        r["record"].split(":")[-1]: float(re.fullmatch(r"vector\((.+)\)", r["expr"].strip()).group(1))  # type: ignore[union-attr]
        for g in groups
        for r in g["rules"]
        if "record" in r
    }
    checked = []
    for rule in (r for g in groups for r in g["rules"] if "alert" in r):
        expr = rule["expr"]
        histograms = set(re.findall(r"(\w+)_bucket\b", expr))
        if "histogram_quantile" not in expr:
            continue
        # An absolute threshold: a *_seconds constant, or a literal number compared with a quantile.
        used = [constants[n] for n in re.findall(r"scalar\(otel_ml:threshold:(\w+_seconds)\)", expr)]
        used += [float(v) for v in re.findall(r"\)\s*[<>]=?\s*([0-9.]+)\b", expr)]
        for histogram in histograms:
            assert histogram in DECLARED_BUCKETS, (rule["alert"], histogram)
            for value in used:
                assert value in DECLARED_BUCKETS[histogram], (rule["alert"], histogram, value)
                checked.append((rule["alert"], value))
    assert checked == [("InferenceLatencyHigh", 2.5)]


def _tested_exprs() -> set[str]:
    return set(re.findall(r"^\s+- expr: (.+)$", RULE_TESTS.read_text(), re.M))


def test_the_documented_quality_and_http_queries_are_the_promtool_tested_ones() -> None:
    """docs/serving.md's queries (recall with a 0-recall class, precision, confusion, HTTP errors) run in promtool."""
    doc = (COLLECTOR_DIR.parent / "docs" / "serving.md").read_text()
    every = [q for block in re.findall(r"```promql\n(.*?)```", doc, re.S) for q in block.splitlines() if q.strip()]
    # The quality and HTTP-error queries (the page also shows others, e.g. summing the workers of a deployment).
    queries = [q for q in every if "ml_model_" in q or "http_response_status_code" in q]
    assert len(queries) == 4
    # The tested forms are the dashboard's, with its variables at "All": the documented ones leave those out.
    tested = set()
    for expr in _tested_exprs():
        for variable in ('job=~".*", ', 'ml_model_name=~".*", ', '{ml_model_name=~".*"}', '{job=~".*"}'):
            expr = expr.replace(variable, "")
        tested.add(expr)
    for query in queries:
        assert query in tested, query


def test_the_dashboards_quality_and_http_panels_are_the_promtool_tested_queries() -> None:
    """Each panel's query, with its variables at "All", is one that promtool evaluates on a 0-recall class."""
    import json

    dashboard = json.loads((COLLECTOR_DIR / "grafana" / "dashboards" / "otel-ml.json").read_text())
    titles = {p["title"]: p for p in dashboard["panels"]}
    tested = _tested_exprs()
    for title in ("Recall per class (1h)", "Precision per class (1h)", "HTTP error ratio by route (4xx and 5xx)"):
        [target] = titles[title]["targets"]
        expr = target["expr"].replace("$job", ".*").replace("$model", ".*").replace("$__rate_interval", "5m")
        assert expr in tested, title
