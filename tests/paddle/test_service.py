"""The Flask example under load on loopback: every request accounted for, spans linked, metrics served."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from opentelemetry.trace import SpanKind

from otel_ml._core import semconv as sc
from tests._net import free_port
from tests.paddle._helpers import EXAMPLE
from tests.paddle._http import INVALID, MODEL, get, http_counts, http_series, post, request, runs, valid_body


def test_request_span_is_the_parent_of_the_run_span(telemetry, server) -> None:  # type: ignore[no-untyped-def]
    status, answer = post(server.server_port, b'{"instances": [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]]}')
    assert status == 200 and len(answer["predictions"]) == 2 and len(answer["classes"]) == 2
    assert all(abs(sum(p) - 1.0) < 1e-5 for p in answer["predictions"])
    [server_span] = [s for s in telemetry.finished() if s.kind is SpanKind.SERVER]
    [run_span] = telemetry.finished(sc.SPAN_PADDLE_RUN)
    assert run_span.context.trace_id == server_span.context.trace_id
    assert run_span.parent is not None and run_span.parent.span_id == server_span.context.span_id
    assert run_span.attributes[sc.ML_BATCH_SIZE] == 2


@pytest.mark.slow
def test_load_every_request_is_accounted_for(telemetry, server) -> None:  # type: ignore[no-untyped-def]
    port = server.server_port
    total, clients, deadline = 2400, 6, time.monotonic() + 120
    statuses: Counter[int] = Counter()
    rows_sent = [0] * clients
    failures: list[str] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        for i in range(k, total, clients):
            if time.monotonic() > deadline:
                failures.append(f"client {k} ran out of time at request {i}")
                return
            if i % 4 == 3:  # a quarter of the requests are invalid, of every kind
                body, expected, _ = INVALID[(i // 4) % len(INVALID)]
                rows = 0
            else:
                (body, rows), expected = valid_body(i), 200
            try:
                status, _ = post(port, body)
            except Exception as exc:  # noqa: BLE001 - collected and reported by the assertion
                failures.append(f"request {i}: {exc!r}")
                continue
            if status != expected:
                failures.append(f"request {i}: status {status}, expected {expected}")
            with lock:
                statuses[status] += 1
            rows_sent[k] += rows

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=150)
    assert not any(t.is_alive() for t in threads)
    assert failures == []

    valid = sum(1 for i in range(total) if i % 4 != 3)
    assert sum(statuses.values()) == total and statuses[200] == valid
    assert runs(port) == valid  # the service's own count of predictor runs; the server is still up
    assert http_counts(telemetry) == statuses + Counter({200: 1})  # + the /health request just made
    durations = telemetry.model_points(sc.METRIC_INFERENCE_DURATION, MODEL)
    assert sum(p.count for p in durations) == valid
    assert all(sc.ERROR_TYPE not in dict(p.attributes) for p in durations)
    [batch] = telemetry.model_points(sc.METRIC_INFERENCE_BATCH_SIZE, MODEL)
    assert batch.count == valid and batch.sum == sum(rows_sent)
    [active] = telemetry.model_points(sc.METRIC_INFERENCE_ACTIVE, MODEL)
    assert active.value == 0
    assert len(telemetry.finished(sc.SPAN_PADDLE_RUN)) == valid


@pytest.mark.slow
@pytest.mark.parametrize(
    "launcher",
    [[], [str(Path(sys.executable).parent / "opentelemetry-instrument")]],
    ids=["plain", "opentelemetry-instrument"],
)
def test_example_script_serves_metrics(tmp_path, launcher) -> None:  # type: ignore[no-untyped-def]
    """The example as a user runs it (alone, or under opentelemetry-instrument) and its embedded /metrics."""
    metrics_port = free_port()
    env = {**os.environ, "OTEL_EXPORTER_PROMETHEUS_PORT": str(metrics_port), "OTEL_TRACES_EXPORTER": "none"}
    env.pop("OTEL_METRICS_EXPORTER", None)
    env.pop("OTEL_SEMCONV_STABILITY_OPT_IN", None)  # otel_ml's default applies
    proc = subprocess.Popen(
        [*launcher, sys.executable, str(EXAMPLE), "--port", "0", "--model-dir", str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        for line in proc.stdout:  # Paddle's warnings come first; the example prints its address
            seen.append(line)
            if line.startswith("serving on http://127.0.0.1:") or len(seen) > 200:
                break
        assert line.startswith("serving on http://127.0.0.1:"), "".join(seen)
        port = int(line.rsplit(":", 1)[1])
        for i in range(3):
            assert post(port, valid_body(i)[0])[0] == 200
        assert post(port, b'{"instances": [["a", 1, 2, 3]]}')[0] == 400
        assert request(port, "GET", "/no-such-path")[0] == 404
        status, text = get(metrics_port, "/metrics")
        assert status == 200
        lines = text.decode().splitlines()
        counts = [ln for ln in lines if ln.startswith("ml_inference_duration_seconds_count{")]
        assert all(f'ml_model_name="{MODEL}"' in ln for ln in counts) and len(counts) >= 1
        assert sum(float(ln.rsplit(" ", 1)[1]) for ln in counts) == 3
        # The stable HTTP conventions are otel_ml's default: no Host, no URL in any label.
        requests = [ln for ln in lines if ln.startswith("http_server_request_duration_seconds_count{")]
        assert any('http_response_status_code="400"' in ln and ln.endswith(" 1.0") for ln in requests), requests
        assert not [ln for ln in lines if ln.startswith("http_server_duration_milliseconds")]
        assert "ml_inference_queue_duration_seconds_count{" in text.decode()
        # Process health beside the model's series, with the semantic-convention names.
        for family in ("process_memory_usage_bytes", "process_thread_count", "cpython_gc_collections_total"):
            assert any(ln.startswith(family + "{") for ln in lines), family
        before = http_series(metrics_port)
        for i in range(50):  # what any client can send: its own Host header, any path
            host = f"h{i}-{uuid.uuid4().hex[:8]}.example"
            assert request(port, "POST", "/predict", valid_body(i)[0], host)[0] == 200
            assert request(port, "GET", f"/{uuid.uuid4().hex}", host=host)[0] == 404
        assert http_series(metrics_port) == before
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=20)
