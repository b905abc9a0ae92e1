"""The example service refuses every bad input with a 4xx and valid JSON; feedback feeds the quality counters."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from otel_ml._core import semconv as sc
from tests.paddle._http import INVALID, MODEL, http_counts, post, runs

ANSWERED = "request_id {!r} is unknown or already has its feedback"


@pytest.mark.parametrize(("body", "status", "message"), INVALID, ids=[m[:24] for _, _, m in INVALID])
def test_invalid_input_gets_a_clear_4xx(telemetry, server, body, status, message) -> None:  # type: ignore[no-untyped-def]
    port = server.server_port
    got_status, answer = post(port, body)
    assert got_status == status
    assert message in answer["error"]
    assert runs(port) == 0
    assert telemetry.model_points(sc.METRIC_INFERENCE_DURATION, MODEL) == []  # refused before the predictor
    assert http_counts(telemetry)[status] == 1


def test_a_huge_chunked_body_gets_413_and_a_wrong_content_type_415(telemetry, server) -> None:  # type: ignore[no-untyped-def]
    port = server.server_port
    chunks = (b" " * 65536 for _ in range(160))  # 10 MiB, with no Content-Length
    status, answer = post(port, chunks, chunked=True)
    assert (status, answer["error"].split(":")[0]) == (413, "body over 65536 bytes")
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        status, answer = post(port, b'{"instances": [[1, 2, 3, 4]]}', content_type=content_type)
        assert (status, answer) == (415, {"error": f"Content-Type is {content_type!r}; expected application/json"})
    assert runs(port) == 0
    assert http_counts(telemetry) == Counter({413: 1, 415: 2, 200: 1})


def test_feedback_counts_outcomes_and_the_pool_wait_is_timed(telemetry, server) -> None:  # type: ignore[no-untyped-def]
    port = server.server_port
    status, answer = post(port, b'{"instances": [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]]}')
    assert status == 200
    predicted = answer["classes"]
    truth = [predicted[0], (predicted[1] + 1) % 3]  # the first right, the second wrong
    body = json.dumps({"request_id": answer["request_id"], "labels": truth}).encode()
    assert post(port, body, "/feedback") == (200, {"counted": 2})
    assert post(port, body, "/feedback") == (404, {"error": ANSWERED.format(answer["request_id"])})
    status, refused = post(port, b'{"request_id": "x", "labels": [3]}', "/feedback")
    assert (status, refused["error"]) == (400, "labels[0] is 3; expected a class 0 to 2")
    outcomes = {
        tuple(p.attributes[k] for k in (sc.ML_TRUTH_LABEL, sc.ML_PREDICTION_LABEL, sc.ML_PREDICTION_CORRECT)): p.value
        for p in telemetry.points(sc.METRIC_MODEL_OUTCOMES)
    }
    right, wrong = (str(truth[0]), str(predicted[0]), True), (str(truth[1]), str(predicted[1]), False)
    assert {k: v for k, v in outcomes.items() if v} == {right: 1, wrong: 1}
    assert len(outcomes) == 4 * 4  # the confusion matrix of 3 classes and _OTHER, every cell from 0
    predictions = {p.attributes[sc.ML_PREDICTION_LABEL]: p.value for p in telemetry.points(sc.METRIC_MODEL_PREDICTIONS)}
    assert sum(predictions.values()) == 2 and {k for k, v in predictions.items() if v} == {str(c) for c in predicted}
    [wait] = telemetry.model_points(sc.METRIC_INFERENCE_QUEUE_DURATION, MODEL)
    assert wait.count == 1
    [waiting] = telemetry.model_points(sc.METRIC_INFERENCE_QUEUE_WAITING, MODEL)
    assert waiting.value == 0


def test_feedback_tokens_count_on_another_worker(telemetry, server, model_prefix, service_module) -> None:  # type: ignore[no-untyped-def]
    """/feedback on a worker that did not predict (pre-fork servers): the token carries the predicted class."""
    port = server.server_port
    status, answer = post(port, b'{"instances": [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [1, 1, 1, 1]]}')
    assert status == 200 and len(answer["feedback"]) == 3
    predicted = answer["classes"]
    truth = [predicted[0], (predicted[1] + 1) % 3, predicted[2]]
    other = service_module.create_app(model_prefix, meter_provider=telemetry.meter_provider, pool_size=1)
    client = other.test_client()  # another app: its own ModelQuality, no memory of the prediction
    reply = client.post("/feedback", json={"feedback": answer["feedback"], "labels": truth})
    assert (reply.status_code, reply.get_json()) == (200, {"counted": 3})
    reply = client.post("/feedback", json={"feedback": answer["feedback"], "labels": truth})
    assert (reply.status_code, reply.get_json()) == (404, {"error": "no feedback token is valid and unused"})
    reply = client.post("/feedback", json={"feedback": answer["feedback"][:2], "labels": truth})
    assert reply.status_code == 400 and "2 tokens" in reply.get_json()["error"]
    outcomes = Counter()  # type: ignore[var-annotated]
    for p in telemetry.points(sc.METRIC_MODEL_OUTCOMES):
        outcomes[p.attributes[sc.ML_PREDICTION_CORRECT]] += p.value
    assert outcomes == {True: 2, False: 1}
