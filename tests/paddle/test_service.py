"""The Flask example under load on loopback: every request accounted for, bad input refused."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import SpanKind

from otel_ml import _semconv as sc
from otel_ml.paddle import PaddleInstrumentor
from tests.paddle.conftest import EXAMPLE, model_points

MODEL = "iris_mlp"
# (body, expected status, expected phrase in the error message)
INVALID: list[tuple[bytes, int, str]] = [
    (b"", 400, "empty body"),
    (b"{not json", 400, "not valid JSON"),
    (b'{"instances": [[1, 2, 3]]}', 400, "instances[0] has 3 values; expected a list of 4 numbers"),
    (b'{"instances": [[1, 2, "x", 4]]}', 400, 'instances[0][2] is "x"; expected a finite number'),
    (b'{"instances": [[1, 2, true, 4]]}', 400, "instances[0][2] is true; expected a finite number"),
    (b'{"instances": []}', 400, '"instances" must be a list of 1 to 64 rows'),
    (b'{"rows": [[1, 2, 3, 4]]}', 400, 'expected a JSON object with an "instances" key'),
    (b'{"instances": [[1, 2, NaN, 4]]}', 400, "instances[0][2] is NaN; expected a finite number"),
    (b'{"instances": [[1, 2, 3, 4]]' + b" " * 70000 + b"}", 413, "body over 65536 bytes"),
    (b'{"instances": [[' + b"9" * 400 + b", 2, 3, 4]]}", 400, "instances[0][0] is 999"),
    (b'{"instances": [[' + b"9" * 5000 + b", 2, 3, 4]]}", 400, "Exceeds the limit (4300 digits)"),
    (b"[" * 50000, 400, "body nests too deeply"),
    (b'{"instances": [[1e39, 2, 3, 4]]}', 400, "instances[0][0] is 1e+39; expected a finite number within +/-3.4"),
]


ANSWERED = "request_id {!r} is unknown or already has its feedback"


def _strict_json(raw: bytes) -> Any:
    """Parse as a strict client would: NaN and Infinity are not JSON."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"the service answered {constant}, which is not valid JSON")

    return json.loads(raw, parse_constant=refuse)


def _post(
    port: int, body: Any, path: str = "/predict", content_type: str = "application/json", chunked: bool = False
) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": content_type}, encode_chunked=chunked)
        response = conn.getresponse()
        return response.status, _strict_json(response.read())
    finally:
        conn.close()


def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _valid_body(i: int) -> tuple[bytes, int]:
    rows = 1 + i % 5
    return json.dumps({"instances": [[0.1 * i, 1.0, -2.5, 3] for _ in range(rows)]}).encode(), rows


@pytest.fixture
def server(telemetry, model_prefix, service_module) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """The example app, instrumented with the test's providers, in a threaded server on a free port."""
    PaddleInstrumentor().instrument(
        meter_provider=telemetry.meter_provider,
        tracer_provider=telemetry.tracer_provider,
        slow_run_seconds=10.0,
    )
    app = service_module.create_app(
        model_prefix, meter_provider=telemetry.meter_provider, tracer_provider=telemetry.tracer_provider
    )
    srv = service_module.make_threaded_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    srv.app = app
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=10)


def _http_counts(telemetry) -> Counter[int]:  # type: ignore[no-untyped-def]
    """Requests by status, from the stable HTTP conventions' duration histogram (otel_ml's default)."""
    counts: Counter[int] = Counter()
    for point in telemetry.points("http.server.request.duration"):
        counts[int(dict(point.attributes)["http.response.status_code"])] += point.count
    return counts


def _runs(port: int) -> int:
    status, body = _get(port, "/health")
    assert status == 200
    return int(json.loads(body)["runs"])


@pytest.mark.parametrize(("body", "status", "message"), INVALID, ids=[m[:24] for _, _, m in INVALID])
def test_invalid_input_gets_a_clear_4xx(telemetry, server, body, status, message) -> None:  # type: ignore[no-untyped-def]
    port = server.server_port
    got_status, answer = _post(port, body)
    assert got_status == status
    assert message in answer["error"]
    assert _runs(port) == 0
    assert model_points(telemetry, sc.METRIC_INFERENCE_DURATION, MODEL) == []  # refused before the predictor
    assert _http_counts(telemetry)[status] == 1


def test_a_huge_chunked_body_gets_413_and_a_wrong_content_type_415(telemetry, server) -> None:  # type: ignore[no-untyped-def]
    port = server.server_port
    chunks = (b" " * 65536 for _ in range(160))  # 10 MiB, with no Content-Length
    status, answer = _post(port, chunks, chunked=True)
    assert (status, answer["error"].split(":")[0]) == (413, "body over 65536 bytes")
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        status, answer = _post(port, b'{"instances": [[1, 2, 3, 4]]}', content_type=content_type)
        assert (status, answer) == (415, {"error": f"Content-Type is {content_type!r}; expected application/json"})
    assert _runs(port) == 0
    assert _http_counts(telemetry) == Counter({413: 1, 415: 2, 200: 1})


def test_feedback_counts_outcomes_and_the_pool_wait_is_timed(telemetry, server) -> None:  # type: ignore[no-untyped-def]
    port = server.server_port
    status, answer = _post(port, b'{"instances": [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]]}')
    assert status == 200
    predicted = answer["classes"]
    truth = [predicted[0], (predicted[1] + 1) % 3]  # the first right, the second wrong
    body = json.dumps({"request_id": answer["request_id"], "labels": truth}).encode()
    assert _post(port, body, "/feedback") == (200, {"counted": 2})
    assert _post(port, body, "/feedback") == (404, {"error": ANSWERED.format(answer["request_id"])})
    status, refused = _post(port, b'{"request_id": "x", "labels": [3]}', "/feedback")
    assert (status, refused["error"]) == (400, "labels[0] is 3; expected a class 0 to 2")
    outcomes = {
        (p.attributes[sc.ML_TRUTH_LABEL], p.attributes[sc.ML_PREDICTION_CORRECT]): p.value
        for p in telemetry.points(sc.METRIC_MODEL_OUTCOMES)
    }
    assert outcomes == {(str(truth[0]), True): 1, (str(truth[1]), False): 1}
    predictions = {p.attributes[sc.ML_PREDICTION_LABEL]: p.value for p in telemetry.points(sc.METRIC_MODEL_PREDICTIONS)}
    assert sum(predictions.values()) == 2 and set(predictions) == {str(c) for c in predicted}
    [wait] = model_points(telemetry, sc.METRIC_INFERENCE_QUEUE_DURATION, MODEL)
    assert wait.count == 1
    [waiting] = model_points(telemetry, sc.METRIC_INFERENCE_QUEUE_WAITING, MODEL)
    assert waiting.value == 0


def test_request_span_is_the_parent_of_the_run_span(telemetry, server) -> None:  # type: ignore[no-untyped-def]
    status, answer = _post(server.server_port, b'{"instances": [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]]}')
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
                (body, rows), expected = _valid_body(i), 200
            try:
                status, _ = _post(port, body)
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
    assert _runs(port) == valid  # the service's own count of predictor runs; the server is still up
    assert _http_counts(telemetry) == statuses + Counter({200: 1})  # + the /health request just made
    durations = model_points(telemetry, sc.METRIC_INFERENCE_DURATION, MODEL)
    assert sum(p.count for p in durations) == valid
    assert all(sc.ERROR_TYPE not in dict(p.attributes) for p in durations)
    [batch] = model_points(telemetry, sc.METRIC_INFERENCE_BATCH_SIZE, MODEL)
    assert batch.count == valid and batch.sum == sum(rows_sent)
    [active] = model_points(telemetry, sc.METRIC_INFERENCE_ACTIVE, MODEL)
    assert active.value == 0
    assert len(telemetry.finished(sc.SPAN_PADDLE_RUN)) == valid


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _request(port: int, method: str, path: str, body: bytes | None = None, host: str = "") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Content-Type": "application/json", **({"Host": host} if host else {})}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _http_series(metrics_port: int) -> set[str]:
    """Every http_* series on /metrics, by name and labels (values left out)."""
    text = _get(metrics_port, "/metrics")[1].decode()
    return {ln.rsplit(" ", 1)[0] for ln in text.splitlines() if ln.startswith("http_")}


@pytest.mark.slow
@pytest.mark.parametrize(
    "launcher",
    [[], [str(Path(sys.executable).parent / "opentelemetry-instrument")]],
    ids=["plain", "opentelemetry-instrument"],
)
def test_example_script_serves_metrics(tmp_path, launcher) -> None:  # type: ignore[no-untyped-def]
    """The example as a user runs it (alone, or under opentelemetry-instrument) and its embedded /metrics."""
    metrics_port = _free_port()
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
            assert _post(port, _valid_body(i)[0])[0] == 200
        assert _post(port, b'{"instances": [["a", 1, 2, 3]]}')[0] == 400
        assert _request(port, "GET", "/no-such-path")[0] == 404
        status, text = _get(metrics_port, "/metrics")
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
        before = _http_series(metrics_port)
        for i in range(50):  # what any client can send: its own Host header, any path
            host = f"h{i}-{uuid.uuid4().hex[:8]}.example"
            assert _request(port, "POST", "/predict", _valid_body(i)[0], host)[0] == 200
            assert _request(port, "GET", f"/{uuid.uuid4().hex}", host=host)[0] == 404
        assert _http_series(metrics_port) == before
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=20)
