"""HTTP helpers of the example-service tests: requests on loopback, strict JSON, series read back."""

from __future__ import annotations

import http.client
import json
from collections import Counter
from typing import Any

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


def strict_json(raw: bytes) -> Any:
    """Parse as a strict client would: NaN and Infinity are not JSON."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"the service answered {constant}, which is not valid JSON")

    return json.loads(raw, parse_constant=refuse)


def post(
    port: int, body: Any, path: str = "/predict", content_type: str = "application/json", chunked: bool = False
) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": content_type}, encode_chunked=chunked)
        response = conn.getresponse()
        return response.status, strict_json(response.read())
    finally:
        conn.close()


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def valid_body(i: int) -> tuple[bytes, int]:
    rows = 1 + i % 5
    return json.dumps({"instances": [[0.1 * i, 1.0, -2.5, 3] for _ in range(rows)]}).encode(), rows


def http_counts(telemetry) -> Counter[int]:  # type: ignore[no-untyped-def]
    """Requests by status, from the stable HTTP conventions' duration histogram (otel_ml's default)."""
    counts: Counter[int] = Counter()
    for point in telemetry.points("http.server.request.duration"):
        counts[int(dict(point.attributes)["http.response.status_code"])] += point.count
    return counts


def runs(port: int) -> int:
    status, body = get(port, "/health")
    assert status == 200
    return int(json.loads(body)["runs"])


def request(port: int, method: str, path: str, body: bytes | None = None, host: str = "") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Content-Type": "application/json", **({"Host": host} if host else {})}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def http_series(metrics_port: int) -> set[str]:
    """Every http_* series on /metrics, by name and labels (values left out)."""
    text = get(metrics_port, "/metrics")[1].decode()
    return {ln.rsplit(" ", 1)[0] for ln in text.splitlines() if ln.startswith("http_")}
