"""The bundled Alertmanager config: valid, routed as documented, messages rendered, noise inhibited.

amtool (Alertmanager 0.25) checks the config, resolves which receiver gets
which alert and renders the notification templates; a real Alertmanager shows
which alerts the inhibit rules mute. The delivery of a real alert from a real
training run is tests/test_alerting_e2e.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests import _net
from tests._alertmanager import AM_CONFIG, alertmanager, amtool, local_config, require_alertmanager
from tests._collector_procs import COLLECTOR_DIR, RULES

CHANNEL_KEYS = ("webhook_configs", "slack_configs", "email_configs")


@pytest.fixture(scope="module", autouse=True)
def _amtool() -> None:
    require_alertmanager()


def test_config_is_valid() -> None:
    out = amtool("check-config", str(AM_CONFIG)).stdout
    assert "SUCCESS" in out
    assert " - 5 inhibit rules" in out and " - 4 receivers" in out and " - 1 templates" in out


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (("alertname=TrainingLossNaN", "severity=critical", "job=trainer", "ml_run_name=r1"), "otel-ml-critical"),
        (("alertname=TrainingStalled", "severity=critical"), "otel-ml-critical"),
        (("alertname=InferenceErrorRateHigh", "severity=critical"), "otel-ml-critical"),
        (("alertname=TrainingLossSpike", "severity=warning"), "otel-ml-warning"),
        (("alertname=TrainingInputBound", "severity=warning"), "otel-ml-warning"),
        (("alertname=GPUMemoryNearFull", "severity=warning"), "otel-ml-warning"),
        (("alertname=GPUUnderutilized", "severity=info"), "otel-ml-info"),
        # An alert of some other rule file without a severity still reaches someone.
        (("alertname=SomethingElse",), "otel-ml-webhook"),
    ],
)
def test_routes_by_severity(labels: tuple[str, ...], receiver: str) -> None:
    proc = amtool("config", "routes", "test", f"--config.file={AM_CONFIG}", f"--verify.receivers={receiver}", *labels)
    assert proc.stdout.strip() == receiver


def test_every_rule_severity_has_its_route() -> None:
    severities = set(re.findall(r"^\s+severity: (\w+)$", RULES.read_text(), re.M))
    assert severities == {"critical", "warning", "info"}
    for severity in severities:
        out = amtool("config", "routes", "test", f"--config.file={AM_CONFIG}", f"severity={severity}").stdout
        assert out.strip() == f"otel-ml-{severity}"


def test_grouping_and_timings_are_per_run() -> None:
    route = yaml.safe_load(AM_CONFIG.read_text())["route"]
    assert route["group_by"] == ["alertname", "job", "ml_run_name", "ml_model_name"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == ("30s", "5m", "4h")
    by_severity = {r["matchers"][0]: r for r in route["routes"]}
    critical = by_severity['severity="critical"']
    assert (critical["group_wait"], critical["repeat_interval"]) == ("10s", "1h")
    info = by_severity['severity="info"']
    assert (info["group_by"], info["group_wait"], info["repeat_interval"]) == (["alertname", "job"], "5m", "24h")


def test_secrets_come_from_files_and_every_channel_is_there() -> None:
    text = AM_CONFIG.read_text()
    config = yaml.safe_load(text)
    # No secret value in the file: the Slack URL, SMTP password and webhook token are *_file paths.
    assert config["global"]["slack_api_url_file"] == "/etc/alertmanager/secrets/slack-webhook-url"
    assert config["global"]["smtp_auth_password_file"] == "/etc/alertmanager/secrets/smtp-password"
    assert not re.search(r"hooks\.slack\.com|access_token=|key=|api_url:|auth_password:|password:", text)
    receivers = {r["name"]: r for r in config["receivers"]}
    urls = [w["url"] for w in receivers["otel-ml-critical"]["webhook_configs"]]
    assert urls == [
        "http://127.0.0.1:5001/otel-ml/alerts",  # the generic webhook
        "http://127.0.0.1:8060/dingtalk/otel-ml/send",  # prometheus-webhook-dingtalk
        "http://127.0.0.1:8080/prometheusalert?type=wx&tpl=prometheus-wx",  # PrometheusAlert -> WeCom
    ]
    generic = receivers["otel-ml-critical"]["webhook_configs"][0]["http_config"]["authorization"]
    assert generic == {"credentials_file": "/etc/alertmanager/secrets/webhook-token"}
    assert {name: sorted(k for k in r if k in CHANNEL_KEYS) for name, r in receivers.items()} == {
        "otel-ml-webhook": ["webhook_configs"],
        "otel-ml-critical": ["email_configs", "slack_configs", "webhook_configs"],
        "otel-ml-warning": ["slack_configs", "webhook_configs"],
        "otel-ml-info": ["email_configs"],
    }
    assert "/collector/alertmanager/secrets/" in (COLLECTOR_DIR.parent / ".gitignore").read_text()


def _render(tmp_path: Path, data: dict[str, object]) -> str:
    data_file = tmp_path / "data.json"
    data_file.write_text(json.dumps(data))
    text = '{{ template "otel_ml.title" . }}\n{{ template "otel_ml.text" . }}'
    out = amtool(
        "template",
        "render",
        "--template.glob=templates/*.tmpl",
        f"--template.text={text}",
        f"--template.data={data_file}",
    ).stdout
    return out


def _data(alertname: str, severity: str, summary: str, description: str, **labels: str) -> dict[str, object]:
    labels = {"alertname": alertname, "severity": severity, **labels}
    alert = {"status": "firing", "labels": labels, "annotations": {"summary": summary, "description": description}}
    group = {k: v for k, v in labels.items() if k in ("alertname", "job", "ml_run_name", "ml_model_name")}
    return {
        "receiver": f"otel-ml-{severity}",
        "status": "firing",
        "alerts": [alert],
        "groupLabels": group,
        "commonLabels": labels,
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://127.0.0.1:9093",
    }


def test_message_names_run_model_worker_and_links_the_dashboard(tmp_path: Path) -> None:
    data = _data(
        "TrainingLossNaN",
        "critical",
        "NaN/Inf loss in run lr 0.1 (model resnet)",
        "The weights are likely corrupt.",
        job="trainer",
        instance="10.0.0.7:9464",
        ml_run_name="lr 0.1",
        ml_model_name="resnet",
        ml_worker_type="worker",
        ml_worker_index="3",
    )
    assert _render(tmp_path, data) == (
        "[FIRING:1] TrainingLossNaN run lr 0.1 (model resnet)\n"
        "FIRING critical: NaN/Inf loss in run lr 0.1 (model resnet)\n"
        "run: lr 0.1 | model: resnet | worker: 10.0.0.7:9464 (worker/3)\n"
        "The weights are likely corrupt.\n"
        "Dashboard: http://127.0.0.1:3000/d/otel-ml/otel-ml?orgId=1&var-job=trainer&var-run=lr+0.1&var-model=resnet"
    )


def test_step_time_message_says_how_to_find_the_slow_steps_trace(tmp_path: Path) -> None:
    data = _data(
        "TrainingStepTimeRegression",
        "warning",
        "Step time regressed in run r1 (model mlp)",
        "Slower.",
        job="trainer",
        instance="10.0.0.8:9464",
        ml_run_name="r1",
        ml_model_name="mlp",
    )
    dashboard = "http://127.0.0.1:3000/d/otel-ml/otel-ml?orgId=1&var-job=trainer&var-run=r1&var-model=mlp"
    assert _render(tmp_path, data) == (
        "[FIRING:1] TrainingStepTimeRegression run r1 (model mlp)\n"
        "FIRING warning: Step time regressed in run r1 (model mlp)\n"
        "run: r1 | model: mlp | worker: 10.0.0.8:9464\n"
        "Slower.\n"
        f"Dashboard: {dashboard}\n"
        f"Slow step's trace: {dashboard}&viewPanel=3 and click a dot above the p95 line\n"
        "(an exemplar: it opens that step's keras.train_step span). Without a trace backend, from the worker's\n"
        "otel_ml endpoint (the instance label when Prometheus scrapes the worker itself):\n"
        "  curl -s -H 'Accept: application/openmetrics-text' http://INSTANCE/metrics | grep 'step_duration.*trace_id'\n"
        "  curl -s 'http://INSTANCE/slow-steps?trace_id=TRACE_ID'"
    )
    panels = json.loads((COLLECTOR_DIR / "grafana" / "dashboards" / "otel-ml.json").read_text())["panels"]
    assert next(p["title"] for p in panels if p["id"] == 3).startswith("Step time p50 / p95")


@pytest.mark.slow
def test_inhibit_rules_mute_exactly_the_documented_alerts(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t")
    sent = {
        # run r1: a NaN loss mutes its loss spike and accuracy drop, not run r2's spike.
        "nan": ("TrainingLossNaN", "critical", "w1", "r1"),
        "spike": ("TrainingLossSpike", "warning", "w1", "r1"),
        "accuracy": ("TrainingAccuracyDrop", "warning", "w1", "r1"),
        "other_spike": ("TrainingLossSpike", "warning", "w2", "r2"),
        # run r3 stalled: its step-time, straggler and input alerts, and worker w3's idle GPU, are muted.
        "stalled": ("TrainingStalled", "critical", "w3", "r3"),
        "regression": ("TrainingStepTimeRegression", "warning", "w3", "r3"),
        "straggler": ("TrainingStraggler", "warning", "w3", "r3"),
        "idle_gpu": ("GPUUnderutilized", "info", "w3", ""),
        # run r4 input-bound on w4: mutes w4's regression and idle GPU, not w5's regression.
        "input": ("TrainingInputBound", "warning", "w4", "r4"),
        "regression4": ("TrainingStepTimeRegression", "warning", "w4", "r4"),
        "idle_gpu4": ("GPUUnderutilized", "info", "w4", ""),
        "regression5": ("TrainingStepTimeRegression", "warning", "w5", "r4"),
    }
    muted = {"spike", "accuracy", "regression", "straggler", "idle_gpu", "regression4", "idle_gpu4"}
    with alertmanager(tmp_path, local_config("http://127.0.0.1:9", token)) as am:
        for key, (alertname, severity, instance, run) in sent.items():
            labels = [f"alertname={alertname}", f"severity={severity}", "job=trainer", f"instance={instance}"]
            labels += [f"ml_run_name={run}"] if run else []
            am.amtool("alert", "add", *labels, f"--annotation=key={key}")

        def states() -> dict[str, str] | None:
            found = {a["annotations"]["key"]: a["status"]["state"] for a in am.alerts(job="trainer")}
            expected = {key: "suppressed" if key in muted else "active" for key in sent}
            return found if found == expected else None

        assert _net.wait_for(states, 20, "the inhibit rules to mute the documented alerts")


def test_prometheus_and_compose_wire_the_bundled_alertmanager() -> None:
    prometheus = yaml.safe_load((COLLECTOR_DIR / "prometheus" / "prometheus.yml").read_text())
    assert prometheus["alerting"] == {"alertmanagers": [{"static_configs": [{"targets": ["127.0.0.1:9093"]}]}]}
    compose = yaml.safe_load((COLLECTOR_DIR / "docker-compose.yaml").read_text())
    service = compose["services"]["alertmanager"]
    assert service["volumes"][0] == "./alertmanager:/etc/alertmanager:ro"
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in service["command"]
    assert "--web.listen-address=127.0.0.1:9093" in service["command"]
    assert "--cluster.listen-address=" in service["command"]
    assert service["image"].endswith(":v0.25.0")
    assert "alertmanager-data" in compose["volumes"]
