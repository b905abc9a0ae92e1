"""End to end: a training run goes NaN and one notification reaches a person's webhook.

Real parts only: Keras fits serving otel_ml's embedded /metrics
(tests/_alerting_train.py), Prometheus 2.42 running the shipped prometheus.yml
and rules (only the scrape and evaluation intervals shortened, to 0.5 s and
1 s), Alertmanager 0.25 running the shipped routes, timings and inhibitions
with every channel replaced by a webhook to a receiver on 127.0.0.1
(tests/_alertmanager.py), and a silence made with amtool.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests import _net
from tests._alertmanager import AM_CONFIG, WebhookReceiver, alertmanager, local_config, require_alertmanager
from tests._prometheus import Prometheus, require_prometheus

pytestmark = pytest.mark.slow

TOKEN = "test-token-from-a-file"
STEPS = 2 * 8  # 2 epochs of 256 samples in batches of 32


def _critical_group_wait() -> float:
    routes = yaml.safe_load(AM_CONFIG.read_text())["route"]["routes"]
    wait = next(r["group_wait"] for r in routes if r["matchers"] == ['severity="critical"'])
    assert wait.endswith("s"), wait
    return float(wait[:-1])


def test_nan_run_notifies_once_healthy_run_is_silent_and_an_amtool_silence_holds(tmp_path: Path) -> None:
    require_prometheus()
    require_alertmanager()
    group_wait = _critical_group_wait()
    token = tmp_path / "webhook-token"
    token.write_text(TOKEN)
    port = _net.free_port()
    with WebhookReceiver() as receiver, alertmanager(tmp_path, local_config(receiver.url, token)) as am:
        silence = am.amtool(
            "silence",
            "add",
            "alertname=TrainingLossNaN",
            "ml_run_name=nan-silenced",
            "--author=test",
            "--comment=known bad learning rate",
            "--duration=10m",
        ).strip()
        assert re.fullmatch(r"[0-9a-f-]{36}", silence), silence
        prometheus = Prometheus.bundled(tmp_path, port)
        config = prometheus.config.read_text()
        assert '"127.0.0.1:9093"' in config
        prometheus.config.write_text(config.replace('"127.0.0.1:9093"', f'"{am.url.removeprefix("http://")}"'))
        log = tmp_path / "train.log"
        train = _net.start(
            [sys.executable, "tests/_alerting_train.py", "healthy", "nan-silenced:nan", "nan:nan", "--hold=120"],
            env={"OTEL_EXPORTER_PROMETHEUS_PORT": str(port), "OTEL_SERVICE_NAME": "trainer"},
            log=log,
        )
        prometheus.start()
        try:
            _net.wait_for(lambda: "ALL DONE" in log.read_text(), 180, f"the three fits (log: {log})")
            faults = dict(re.findall(r"^FAULT (\S+) ([\d.]+)$", log.read_text(), re.M))
            assert sorted(faults) == ["nan", "nan-silenced"]

            def notified() -> list[float]:
                return [n.at for n in receiver.received if n.payload["groupLabels"].get("ml_run_name") == "nan"]

            (notified_at,) = _net.wait_for(notified, 60, "the TrainingLossNaN notification of run nan")
            latency = notified_at - float(faults["nan"])

            def suppressed() -> float | None:
                found = am.alerts(alertname="TrainingLossNaN", ml_run_name="nan-silenced")
                ok = [
                    a
                    for a in found
                    if a["status"] == {"state": "suppressed", "silencedBy": [silence], "inhibitedBy": []}
                ]
                return time.time() if ok else None

            # The silenced run's alert did reach Alertmanager; past its group_wait it would have been sent.
            seen = _net.wait_for(suppressed, 30, "the silenced run's alert in Alertmanager")
            time.sleep(max(0.0, max(seen, notified_at) + group_wait + 3 - time.time()))
            assert prometheus.value('ml_train_steps_total{ml_run_name="healthy"}') == STEPS
            assert am.alerts(ml_run_name="healthy") == []
        finally:
            prometheus.stop()
            _net.stop(train)

    print(f"\nfault-to-notification latency: {latency:.1f} s (group_wait {group_wait:.0f} s)")
    assert len(receiver.received) == 1, [n.payload for n in receiver.received]
    (note,) = receiver.received
    assert (note.path, note.authorization) == ("/otel-ml-critical", f"Bearer {TOKEN}")
    payload = note.payload
    assert (payload["receiver"], payload["status"]) == ("otel-ml-critical", "firing")
    assert payload["groupLabels"] == {
        "alertname": "TrainingLossNaN",
        "job": "otel-collector",
        "ml_run_name": "nan",
        "ml_model_name": "demo_mlp",
    }
    (alert,) = payload["alerts"]
    assert {k: alert["labels"].get(k) for k in ("alertname", "severity", "ml_run_name", "service_name")} == {
        "alertname": "TrainingLossNaN",
        "severity": "critical",
        "ml_run_name": "nan",
        "service_name": "trainer",
    }
    assert alert["annotations"]["summary"] == "NaN/Inf loss in run nan (model demo_mlp)"
    # Scrape (0.5 s) + evaluation (1 s) + the critical route's group_wait, with room for a loaded machine.
    assert group_wait <= latency < group_wait + 10
