"""The embedded endpoint under hostile input: bad queries, bursts, half-open connections, IPv6."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider

from otel_ml.distro.endpoint import OtelMLPrometheusMetricReader, SlowStepBuffer, _server
from tests import _net

pytestmark = pytest.mark.slow


@pytest.fixture
def endpoint() -> Iterator[OtelMLPrometheusMetricReader]:
    reader = OtelMLPrometheusMetricReader(host="127.0.0.1", port=0, slow_steps=SlowStepBuffer(4))
    provider = MeterProvider(metric_readers=[reader])
    provider.get_meter("faults").create_counter("faults.scraped").add(1)
    yield reader
    provider.shutdown()


def base(reader: OtelMLPrometheusMetricReader) -> str:
    return reader.url.removesuffix("/metrics")


@pytest.mark.parametrize("limit", ["%C2%B2", "9" * 5000, "0", "-1", "1.5", "1e3", "%00"])
def test_a_bad_limit_is_a_400_saying_what_is_accepted_and_nothing_on_stderr(endpoint, limit, capfd) -> None:
    status, content_type, body = _net.get(f"{base(endpoint)}/slow-steps?limit={limit}")
    assert (status, content_type) == (400, "application/json")
    assert body == '{"error": "limit must be a whole number from 1 to 999999999 (ASCII digits)"}'
    assert capfd.readouterr().err == ""


def test_a_good_limit_and_a_bad_request_line(endpoint) -> None:
    assert _net.get(f"{base(endpoint)}/slow-steps?limit=999999999")[:2] == (200, "application/json")
    with socket.create_connection(("127.0.0.1", endpoint.server.port), timeout=5) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_1500_half_open_connections_hold_256_sockets_and_no_thread_and_scrapes_still_answer(endpoint) -> None:
    threads_before = {t.name for t in threading.enumerate()}
    idle = [socket.create_connection(("127.0.0.1", endpoint.server.port), timeout=5) for _ in range(1500)]
    try:
        started = time.monotonic()
        status, _, body = _net.get(endpoint.url, timeout=5)
        took = time.monotonic() - started
        assert status == 200 and "faults_scraped_total" in body
        assert took < 1.0
        time.sleep(0.3)
        # MAX_HELD idle ones at most, less the scrape's slot and the last batch dropped to make room.
        assert _server.MAX_HELD - _server._EVICT_BATCH - 1 <= len(endpoint.server._held) <= _server.MAX_HELD
        threads_now = {t.name for t in threading.enumerate()}
        # No thread added, whatever the connections (the app's WORKERS threads start with the server).
        new = sorted(threads_now - threads_before)
        assert new == []
    finally:
        for sock in idle:
            sock.close()


def test_a_burst_of_200_connections_all_answer(endpoint) -> None:
    def scrape(_: int) -> int:
        return _net.get(endpoint.url, timeout=10)[0]

    with ThreadPoolExecutor(200) as pool:
        assert list(pool.map(scrape, range(200))) == [200] * 200


def test_a_stop_right_after_start_is_prompt_and_frees_the_port() -> None:
    started = time.monotonic()
    reader = OtelMLPrometheusMetricReader(host="127.0.0.1", port=0)
    port = reader.server.port
    reader.shutdown()
    assert time.monotonic() - started < 1.0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_ipv6_loopback_serves_or_fails_with_one_clear_line(caplog) -> None:
    with caplog.at_level(logging.ERROR, logger="otel_ml"):
        reader = OtelMLPrometheusMetricReader(host="::1", port=0)
    provider = MeterProvider(metric_readers=[reader])
    try:
        if socket.has_ipv6 and reader.server.running:
            assert reader.url.startswith("http://[::1]:")
            assert _net.get(reader.url)[0] == 200
            assert caplog.records == []
        else:  # a host without IPv6
            (record,) = caplog.records
            assert "cannot serve /metrics on [::1]:0" in record.getMessage()
            assert "IPv6" in record.getMessage()
    finally:
        provider.shutdown()


def test_a_burst_of_200_during_training_all_answer(tmp_path: Path) -> None:
    """The endpoint of a real Keras fit: 200 concurrent scrapes, then 1,500 idle connections."""
    proc, url = _net.start_example(
        tmp_path / "train.log", instrument=False, slow_step=-1, slow_seconds=0, threshold=10, epochs=1000, samples=512
    )
    try:
        log = tmp_path / "train.log"
        _net.wait_for(lambda: "ml_train_steps_total" in _net.get(f"{url}/metrics")[2], 120, "training to start")
        with ThreadPoolExecutor(200) as pool:
            statuses = list(pool.map(lambda _: _net.get(f"{url}/metrics", timeout=10)[0], range(200)))
        assert statuses == [200] * 200
        fds_before = len(os.listdir(f"/proc/{proc.pid}/fd"))
        idle = [socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=5) for _ in range(1500)]
        try:
            started = time.monotonic()
            assert _net.get(f"{url}/metrics", timeout=5)[0] == 200
            assert time.monotonic() - started < 2.0
            time.sleep(0.5)
            assert len(os.listdir(f"/proc/{proc.pid}/fd")) - fds_before <= _server.MAX_HELD + 2
        finally:
            for sock in idle:
                sock.close()
        assert "fit finished" not in log.read_text()  # all of it happened during training
    finally:
        _net.stop(proc)
