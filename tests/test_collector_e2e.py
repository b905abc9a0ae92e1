"""End to end: Keras training -> OTLP -> the bundled collector -> Prometheus, with real processes.

The collector (collector/build/otelcol-ml running collector/otel-collector.yaml)
and Prometheus 2.42 (collector/prometheus/prometheus.yml, with the bundled
alert rules and exemplar storage) run on free 127.0.0.1 ports in a temporary
directory. examples/keras_train.py runs under ``opentelemetry-instrument``
exporting OTLP to the collector. Everything is asserted through Prometheus's
HTTP API and the collector's trace file.

Without Go or the built collector these tests skip, unless
OTEL_ML_REQUIRE_COLLECTOR=1 (set by .ci/run) makes that a failure.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import _collector_names as names
from tests._collector_procs import (
    DASHBOARD,
    Collector,
    finish,
    require_collector,
    series_names,
    start_training,
    training_env,
    wait_for,
)
from tests._prometheus import Prometheus

# 2 epochs x ceil(512 / 32) = 32 steps; global step 20 sleeps 0.5 s inside its step.
HEALTHY_ARGS = ("--epochs", "2", "--samples", "512", "--batch-size", "32", "--slow-step", "20", "--slow-seconds", "0.5")
HEALTHY_STEPS = 32
SLOW_STEP = 20
# 1 epoch x 8 steps; the batch of step 3 has a NaN label, so the loss is NaN from there on.
NAN_ARGS = ("--epochs", "1", "--samples", "256", "--batch-size", "32", "--slow-step", "-1", "--nan-at-step", "3")
# 2 x ceil(512 / 8) = 128 steps; step 64 sleeps 8 s, so the fit is still running during the outage.
OUTAGE_ARGS = ("--epochs", "2", "--samples", "512", "--batch-size", "8", "--slow-step", "64", "--slow-seconds", "8")
OUTAGE_STEPS = 128
WORKER_LABELS = ("service_name", "service_instance_id", "ml_worker_type", "ml_worker_index")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Collector, Prometheus]]:
    require_collector()
    workdir = tmp_path_factory.mktemp("collector-e2e")
    collector = Collector(workdir)
    prometheus = Prometheus.bundled(workdir, collector.prom_port)
    collector.start()
    try:
        prometheus.start()
        yield collector, prometheus
    finally:
        prometheus.stop()
        collector.stop()


@pytest.fixture(scope="module")
def runs(stack: tuple[Collector, Prometheus]) -> dict[str, Any]:
    """The healthy run and the NaN run, side by side (two workers of one job)."""
    collector, prometheus = stack
    started = time.time()
    # An OTLP export carries a histogram exemplar once, and the collector shows it only until the
    # next export replaces the point. With no periodic export during the short fit, the slow
    # step's exemplar arrives in the final export and stays there for Prometheus to scrape;
    # with one between the slow step and the end, it could be gone before a scrape came.
    healthy = start_training(training_env(collector, "healthy", "worker-0", 0, export_ms=120_000), *HEALTHY_ARGS)
    nan = start_training(training_env(collector, "nan", "worker-1", 1), *NAN_ARGS)
    results = {"healthy": finish(healthy), "nan": finish(nan), "started": started}
    for name in ("healthy", "nan"):
        rc, log = results[name]
        assert rc == 0, f"{name} run failed:\n{log[-4000:]}"
        assert "Traceback" not in log, log[-4000:]
    wait_for(
        lambda: prometheus.value('ml_train_steps_total{ml_run_name="healthy"}') == HEALTHY_STEPS,
        30,
        "the healthy run's final step count in Prometheus",
    )
    # The two runs export independently: one's final count can reach a scrape after the other's.
    wait_for(
        lambda: prometheus.value('ml_train_steps_total{ml_run_name="nan"}') == 8,
        30,
        "the NaN run's final step count in Prometheus",
    )
    return results


def _maxrss_kb(log: str) -> int:
    match = re.search(r"OTEL_ML_TEST_MAXRSS_KB=(\d+)", log)
    assert match, log[-2000:]
    return int(match.group(1))


def test_step_counter_is_exact_and_worker_labels_are_present(
    stack: tuple[Collector, Prometheus], runs: dict[str, Any]
) -> None:
    _, prometheus = stack
    result = prometheus.query('ml_train_steps_total{ml_run_name="healthy"}')
    assert len(result) == 1
    labels = result[0]["metric"]
    assert float(result[0]["value"][1]) == HEALTHY_STEPS
    assert {k: labels.get(k) for k in WORKER_LABELS} == {
        "service_name": "trainer",
        "service_instance_id": "worker-0",
        "ml_worker_type": "worker",
        "ml_worker_index": "0",
    }
    # honor_labels keeps the job/instance the collector derives from the resource.
    assert (labels["job"], labels["instance"]) == ("trainer", "worker-0")
    assert labels["ml_framework"] == "keras" and labels["ml_model_name"] == "demo_mlp"
    assert labels["otel_scope_name"].startswith("otel_ml")
    # Only worker identity comes from the resource: no host, process or SDK labels.
    assert not [k for k in labels if k.startswith(("host_", "process_", "telemetry_"))]
    nan_steps = prometheus.value('ml_train_steps_total{ml_run_name="nan"}')
    assert nan_steps == 8


def test_exemplar_trace_id_is_the_slow_steps_span(stack: tuple[Collector, Prometheus], runs: dict[str, Any]) -> None:
    collector, prometheus = stack
    body = prometheus.api(
        "query_exemplars",
        query='ml_train_step_duration_seconds_bucket{ml_run_name="healthy"}',
        start=str(runs["started"] - 5),
        end=str(time.time() + 5),
    )
    assert body["status"] == "success", body
    exemplars = [e for series in body["data"] for e in series["exemplars"]]
    slow = [e for e in exemplars if float(e["value"]) >= 0.5]
    assert slow, f"no exemplar of the 0.5 s step among {exemplars}"
    step_spans = wait_for(
        lambda: [
            s
            for s in collector.spans()
            if s["name"] == "keras.train_step" and int(s["attributes"].get("ml.step", -1)) == SLOW_STEP
        ],
        15,
        "the slow step's keras.train_step span in the collector's trace file",
    )
    assert len(step_spans) == 1
    assert step_spans[0]["traceId"] in {e["labels"]["trace_id"] for e in slow}


def test_series_and_label_names_match_the_embedded_endpoint(stack: tuple[Collector, Prometheus]) -> None:
    collector, prometheus = stack
    expected = names.embedded_series()
    names.send_to_collector(collector.otlp_endpoint)
    match = f'{{ml_run_name="{names.RUN}"}}'
    got = wait_for(
        lambda: (s := set(series_names(prometheus, match))) and len(s) >= len(expected) and s,
        20,
        "every reference series in Prometheus",
    )
    # Prometheus adds job and instance on the embedded path at scrape time; the collector sets them.
    got = {
        (name, labels - {"job", "instance"})
        for name, labels in got
        if not name.endswith("_created") and not name.startswith("ALERTS")
    }
    assert got == expected, (sorted(got - expected), sorted(expected - got))
    # Spot checks against docs/metric-names.md.
    got_names = {name for name, _ in got}
    assert {
        "ml_train_steps_total",
        "ml_train_step_duration_seconds_bucket",
        "ml_train_loss",
        "hw_gpu_utilization",
        "hw_gpu_memory_usage_bytes",
        "hw_power_watts",
        "hw_energy_joules_total",
        "hw_temperature_celsius",
    } <= got_names
    # No unit-"1" `_ratio` suffix; hw.fan.speed_ratio carries it in its convention name.
    assert not [n for n in got_names if n.endswith("_ratio") and n != "hw_fan_speed_ratio"]


def test_loss_nan_alert_expression_is_true_for_the_nan_run_only(
    stack: tuple[Collector, Prometheus], runs: dict[str, Any]
) -> None:
    _, prometheus = stack
    expr = _rule_queries(prometheus)["TrainingLossNaN"]
    firing = {r["metric"].get("ml_run_name") for r in prometheus.query(expr)}
    assert "nan" in firing
    assert "healthy" not in firing
    assert prometheus.value('sum(ml_train_anomalies_total{ml_run_name="nan", ml_anomaly_kind="nan_loss"})') == 5
    assert prometheus.query('ml_train_anomalies_total{ml_run_name="healthy", ml_anomaly_kind="nan_loss"}') == []


def _rule_queries(prometheus: Prometheus) -> dict[str, str]:
    body = prometheus.api("rules")
    assert body["status"] == "success", body
    rules = [r for g in body["data"]["groups"] for r in g["rules"]]
    assert all(r["health"] != "err" for r in rules), [r for r in rules if r["health"] == "err"]
    return {r.get("name"): r["query"] for r in rules}


def _dashboard_targets() -> list[tuple[str, str]]:
    dashboard = json.loads(Path(DASHBOARD).read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel.get("targets", [])]


def _concrete(expr: str) -> str:
    for var, value in (("$__rate_interval", "5s"), ("$job", ".*"), ("$run", ".*"), ("$model", ".*"), ("$gpu", ".*")):
        expr = expr.replace(var, value)
    assert "$" not in expr, expr
    return expr


def test_every_rule_and_dashboard_query_is_valid_and_training_panels_have_data(
    stack: tuple[Collector, Prometheus], runs: dict[str, Any]
) -> None:
    _, prometheus = stack
    for name, query in _rule_queries(prometheus).items():
        assert prometheus.api("query", query=query)["status"] == "success", name
    targets = _dashboard_targets()
    assert len(targets) >= 14
    # A short fit reaches Prometheus in its last export or two: let a few more
    # scrapes land (0.5 s apart) so that rate() windows hold two samples.
    wait_for(
        lambda: prometheus.value('count_over_time(ml_train_steps_total{ml_run_name="healthy"}[10s])') >= 6,
        30,
        "three seconds of scrapes of the finished runs",
    )
    end = time.time()
    empty = []
    for title, expr in targets:
        concrete = _concrete(expr)
        body = prometheus.api("query_range", query=concrete, start=str(end - 2), end=str(end), step="0.5")
        assert body["status"] == "success", f"{title}: {concrete}: {body}"
        if "ml_train_" in expr and not body["data"]["result"]:
            empty.append(title)
    assert not empty, f"training panels without data: {empty}"
    # The variables' label_values() selectors resolve to this test's job, runs and model.
    assert {r["metric"]["job"] for r in prometheus.query('count by (job) ({__name__=~"ml_.+|hw_.+"})')} >= {"trainer"}
    runs_seen = {r["metric"]["ml_run_name"] for r in prometheus.query("count by (ml_run_name) (ml_train_steps_total)")}
    assert {"healthy", "nan"} <= runs_seen


def test_collector_outage_training_finishes_and_counter_catches_up(
    stack: tuple[Collector, Prometheus], runs: dict[str, Any]
) -> None:
    collector, prometheus = stack
    selector = 'ml_train_steps_total{ml_run_name="outage"}'
    proc = start_training(training_env(collector, "outage", "worker-2", 2), *OUTAGE_ARGS, "--hold", "3")
    try:
        # Training has started (some steps are in Prometheus) and is inside its 8 s slow step.
        first = wait_for(lambda: prometheus.value(selector), 120, "the outage run's first steps")
        collector.stop()
        down_at = time.monotonic()
        time.sleep(4)
        collector.start()
        outage = time.monotonic() - down_at
        rc, log = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0, log[-4000:]
    assert "Traceback" not in log, log[-4000:]
    assert 0 < first < OUTAGE_STEPS
    wait_for(lambda: prometheus.value(selector) == OUTAGE_STEPS, 30, "the exact step total after the outage")
    # Prometheus saw the counter stuck (or absent) during the outage, then caught up to the exact total.
    assert outage >= 4
    failures = [line for line in log.splitlines() if re.search(r"export|UNAVAILABLE", line, re.IGNORECASE)]
    assert 1 <= len(failures) <= 3, "\n".join(failures)
    # Bounded memory: the outage run peaks no higher than the healthy run plus a margin.
    assert _maxrss_kb(log) < _maxrss_kb(runs["healthy"][1]) + 150_000
