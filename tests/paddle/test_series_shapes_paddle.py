"""Series shapes of the example Flask + Paddle service, as users read them: a real scrape of /metrics.

The README's serving combination: ``examples/paddle_service.py`` (``otel_ml.instrument()``,
``instrument_flask_app``, ``QueueTimer``, ``ModelQuality``, a real Paddle predictor pool), with
the fake NVML's two GPUs, in its own process. Its /metrics is scraped over HTTP (classic text and
OpenMetrics), parsed with prometheus_client's parsers and checked by ``promtool check metrics``
(tests/_scrape.py), and a ``console`` exporter beside the endpoint shows every point's attributes
as recorded: one scope and one set of attribute keys per metric name (the conditional
``error.type`` and ``ml.model.version`` aside), and no SDK warning on stderr. This is the half of
that proof that cannot run beside TensorFlow (tests/test_series_shapes.py has the other).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests import _net
from tests._scrape import CONDITIONAL_KEYS, check_scrape, recorded_key_sets

pytestmark = pytest.mark.slow

EXAMPLE = _net.ROOT / "examples" / "paddle_service.py"


def _post(url: str, body: object) -> tuple[int, dict[str, object]]:
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_example_service_one_key_set_per_name_real_scrape_and_quiet_stderr(tmp_path: Path) -> None:
    metrics_port = _net.free_port()
    stdout, stderr = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    env = {
        **os.environ,
        "PYTHONPATH": str(_net.ROOT),
        "PYTHONUNBUFFERED": "1",
        "OTEL_SERVICE_NAME": "paddle-shapes",
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(metrics_port),
        "OTEL_METRICS_EXPORTER": "otel_ml_prometheus,console",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "OTEL_ML_GPU_NVML_MODULE": "tests.fake_nvml",
    }
    env.pop("CUDA_VISIBLE_DEVICES", None)  # the fake NVML shows two GPUs
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(EXAMPLE), "--port=0", f"--model-dir={tmp_path / 'model'}"],
            cwd=_net.ROOT,
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    try:

        def serving() -> str | None:
            assert proc.poll() is None, stderr.read_text()[-3000:]
            found = re.search(r"serving on (http://127\.0\.0\.1:\d+)", stdout.read_text())
            return found.group(1) if found else None

        base = _net.wait_for(serving, 120, "the example service to serve")
        rows = [[0.1, 0.2, 0.3, 0.4]]
        answers = [_post(f"{base}/predict", {"instances": rows * n}) for n in (1, 2, 4)]
        assert [status for status, _ in answers] == [200, 200, 200]
        assert _post(f"{base}/predict", {"instances": "nope"})[0] == 400
        request_id = answers[0][1]["request_id"]
        assert _post(f"{base}/feedback", {"request_id": request_id, "labels": [1]})[0] == 200
        runs = _net.get_json(f"{base}/health")["runs"]
        metrics = f"http://127.0.0.1:{metrics_port}/metrics"

        def scraped() -> tuple[str, str] | None:
            text = _net.get(metrics)[2]
            counts = re.findall(r"^ml_inference_duration_seconds_count\{[^}]*\} (\S+)$", text, re.M)
            if sum(float(c) for c in counts) != runs:
                return None
            return text, _net.get(metrics, accept="application/openmetrics-text; version=1.0.0")[2]

        text, openmetrics = _net.wait_for(scraped, 30, f"{runs} predictor runs on /metrics")
        families = check_scrape(text, openmetrics)
        http = {
            (s.labels["http_route"], s.labels["http_response_status_code"]): s.value
            for s in families["http_server_request_duration_seconds"].samples
            if s.name.endswith("_count")
        }
        assert http == {("/predict", "200"): 3, ("/predict", "400"): 1, ("/feedback", "200"): 1, ("/health", "200"): 1}
        batch = [s for s in families["ml_inference_batch_size"].samples if s.name.endswith("_sum")]
        assert sum(s.value for s in batch) == 1 + 2 + 4
        assert {s.labels["hw_id"] for s in families["hw_power_watts"].samples} == {
            "GPU-00000000-1111-2222-3333-444444444444",
            "GPU-99999999-8888-7777-6666-555555555555",
        }
        _net.wait_for(lambda: '"name": "ml.inference.duration"' in stdout.read_text(), 30, "a console export")
    finally:
        _net.stop(proc)
    recorded = recorded_key_sets(stdout.read_text())
    ours = {name: scopes for name, scopes in recorded.items() if name.startswith(("ml.", "hw.", "http."))}
    for name in ("ml.inference.duration", "ml.inference.batch.size", "ml.model.load.duration", "hw.power"):
        assert name in ours, sorted(ours)
    for name, scopes in ours.items():
        assert len(scopes) == 1, f"{name} recorded in several scopes: {sorted(scopes)}"
        (key_sets,) = scopes.values()
        assert len({keys - CONDITIONAL_KEYS for keys in key_sets}) == 1, f"{name}: {key_sets}"
    sdk = re.findall(r"^(?:WARNING|ERROR|CRITICAL) opentelemetry\S*: .*$", stderr.read_text(), re.M)
    assert sdk == [], sdk
    assert "conflicting metrics identities" not in stderr.read_text()
