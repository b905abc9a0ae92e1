"""End to end: a training run goes NaN and one notification reaches a person's webhook.

Real parts only: Keras fits serving otel_ml's embedded /metrics
(tests/_alerting_train.py), then in the same program the TensorBoard guide's
``GradientTape`` loop writing ``loss`` with ``tf.summary`` (no ``fit``), and a
tensorboardX program bridged by ``otel-ml tensorboard`` (its own /metrics):
each goes NaN and must page. Prometheus 2.42 running the shipped prometheus.yml
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
# How long a NaN takes to reach /metrics on each path, at most (docs/tf_summary.md, "Time to visibility"):
# tf.summary: the writer's flush and the follower's read, both every OTEL_ML_TF_SUMMARY_FLUSH_SECONDS (10 s);
# the bridge: tensorboardX's flush_secs (2 s here) plus the bridge's --interval (1 s).
VISIBILITY = {"nan": 0.0, "tfnan": 20.0, "txnan": 3.0}


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
    port, bridge_port = _net.free_port(), _net.free_port()
    tbx_logs, tf_logs = tmp_path / "tbx-logs", tmp_path / "tf-logs"
    tbx_logs.mkdir()
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
        config = config.replace('"127.0.0.1:9093"', f'"{am.url.removeprefix("http://")}"')
        target = f'"127.0.0.1:{port}"'
        assert target in config
        prometheus.config.write_text(config.replace(target, f'{target}, "127.0.0.1:{bridge_port}"'))
        log, bridge_log = tmp_path / "train.log", tmp_path / "bridge.log"
        bridge = _net.start(
            [str(_net.BIN / "otel-ml"), "tensorboard", str(tbx_logs), "--interval=1", f"--state-dir={tmp_path / 's'}"],
            env={"OTEL_EXPORTER_PROMETHEUS_PORT": str(bridge_port), "OTEL_SERVICE_NAME": "bridge"},
            log=bridge_log,
        )
        train = _net.start(
            [
                *(sys.executable, "tests/_alerting_train.py", "healthy", "nan-silenced:nan", "nan:nan", "--hold=120"),
                *("--tf-summary=tfnan", f"--logdir={tf_logs}", "--tensorboardx=txnan", f"--tbx-logdir={tbx_logs}"),
            ],
            env={
                "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
                "OTEL_SERVICE_NAME": "trainer",
                "OTEL_ML_TF_SUMMARY_LOGDIR_ROOT": str(tf_logs),
            },
            log=log,
        )
        prometheus.start()
        try:
            _net.wait_for(lambda: "ALL DONE" in log.read_text(), 180, f"the three fits and two loops (log: {log})")
            faults = {run: float(at) for run, at in re.findall(r"^FAULT (\S+) ([\d.]+)$", log.read_text(), re.M)}
            assert sorted(faults) == ["nan", "nan-silenced", "tfnan", "txnan"]

            def notified() -> dict[str, float] | None:
                runs = {n.payload["groupLabels"].get("ml_run_name"): n.at for n in receiver.received}
                return runs if set(VISIBILITY) <= set(runs) else None

            notified_at = _net.wait_for(notified, 90, "the TrainingLossNaN notifications of nan, tfnan and txnan")
            latencies = {run: notified_at[run] - faults[run] for run in VISIBILITY}

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
            time.sleep(max(0.0, max(seen, *notified_at.values()) + group_wait + 3 - time.time()))
            assert prometheus.value('ml_train_steps_total{ml_run_name="healthy"}') == STEPS
            assert am.alerts(ml_run_name="healthy") == []
            # The tf.summary and bridged runs paged through the anomaly counter, as fit does.
            for run, framework in (("tfnan", "tf_summary"), ("txnan", "tensorboard")):
                anomalies = f'ml_train_anomalies_total{{ml_run_name="{run}",ml_anomaly_kind="nan_loss"}}'
                assert (prometheus.value(anomalies) or 0) >= 1, run
                assert prometheus.query(f'{anomalies[:-1]},ml_framework="{framework}"}}'), run
        finally:
            prometheus.stop()
            _net.stop(train)
            _net.stop(bridge)

    for run, seconds in latencies.items():
        print(f"\nfault-to-notification latency of {run}: {seconds:.1f} s (group_wait {group_wait:.0f} s)")
    assert len(receiver.received) == 3, [n.payload for n in receiver.received]
    note = next(n for n in receiver.received if n.payload["groupLabels"]["ml_run_name"] == "nan")
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
    # Scrape (0.5 s) + evaluation (1 s) + the critical route's group_wait, with room for a loaded machine,
    # plus how long the value takes to reach /metrics on its path.
    for run, seconds in latencies.items():
        assert group_wait <= seconds < group_wait + VISIBILITY[run] + 10, (run, seconds)
    tf_note = next(n for n in receiver.received if n.payload["groupLabels"]["ml_run_name"] == "tfnan")
    assert tf_note.payload["groupLabels"] == {
        "alertname": "TrainingLossNaN",
        "job": "otel-collector",
        "ml_run_name": "tfnan",
        "ml_model_name": "unknown",  # an event file names no model
    }
    (tf_alert,) = tf_note.payload["alerts"]
    assert tf_alert["labels"]["service_name"] == "trainer"
    bridge_note = next(n for n in receiver.received if n.payload["groupLabels"]["ml_run_name"] == "txnan")
    (bridge_alert,) = bridge_note.payload["alerts"]
    assert bridge_alert["labels"]["service_name"] == "bridge"
    assert bridge_alert["labels"]["instance"] == f"127.0.0.1:{bridge_port}"
