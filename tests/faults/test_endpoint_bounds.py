"""The endpoint cannot be starved or held: descriptors, queue, exit, scrape cost, Host, addresses, ports.

Each case is a neighbour doing what a hostile or broken client does, against
a real program (``_endpoint_child.py``, with the usual 1,024-descriptor
limit) or a real server on a free loopback port.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import resource
import selectors
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider

from otel_ml.distro import _sdk
from otel_ml.distro.endpoint import (
    EndpointUnavailable,
    OtelMLPrometheusMetricReader,
    SlowStepBuffer,
    _page,
    _server,
    serving_only,
)
from otel_ml.distro.endpoint._server import EmbeddedServer
from tests import _net

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
REQUEST = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _raise_own_descriptor_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def flood(port: int, count: int, *, close_after_send: bool) -> list[socket.socket]:
    """``count`` connections that each send ``GET /metrics`` and never read (or close at once)."""
    _raise_own_descriptor_limit(count + 512)
    selector = selectors.DefaultSelector()
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a client that does not read
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        selector.register(sock, selectors.EVENT_WRITE)
        sockets.append(sock)
    pending, deadline = len(sockets), time.monotonic() + 60
    while pending and time.monotonic() < deadline:
        for key, _ in selector.select(0.5):
            ready = key.fileobj
            assert isinstance(ready, socket.socket)
            selector.unregister(ready)
            pending -= 1
            try:
                ready.send(REQUEST)
            except OSError:
                pass
            if close_after_send:
                ready.close()
    selector.close()
    return sockets


class Child:
    """``_endpoint_child.py`` on a free port, talked to over stdin/stdout."""

    def __init__(self, **env: str) -> None:
        self.port = _net.free_port()
        full_env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "OTEL_METRICS_EXPORTER": "otel_ml_prometheus",
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_EXPORTER_PROMETHEUS_PORT": str(self.port),
            **env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "faults" / "_endpoint_child.py")],
            env=full_env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.readline() == "ready"
        self.url = f"http://127.0.0.1:{self.port}/metrics"

    def readline(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def ask(self, command: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.readline()

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))


@pytest.fixture
def child_factory() -> Iterator[Any]:
    children: list[Child] = []

    def make(**env: str) -> Child:
        children.append(Child(**env))
        return children[-1]

    yield make
    for child in children:
        _net.stop(child.proc)  # type: ignore[arg-type]


def test_1500_unread_scrapes_hold_at_most_256_descriptors_and_the_program_keeps_opening_files(child_factory) -> None:
    child = child_factory(CHILD_SERIES="3000")
    status, _, body = _net.get(child.url)
    assert status == 200 and body.count("child_series_total{") == 3000
    before = child.fds()
    clients = flood(child.port, 1500, close_after_send=False)
    try:
        peak, opened = 0, list[str]()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            peak = max(peak, child.fds() - before)
            if not opened and peak >= 200:
                opened.append(child.ask("open"))  # the program's own open() while the flood is held
            time.sleep(0.05)
        # The bound holds whatever the state (waiting for an answer or writing it); and it was reached.
        assert 200 <= peak <= _server.MAX_HELD + 2, peak
        assert opened == ["opened 100"]
    finally:
        for sock in clients:
            sock.close()
    gone = time.monotonic()
    _net.wait_for(lambda: _net.get(child.url, timeout=5)[0] == 200, 20, "a scrape after the flood", interval=0.1)
    print(f"peak descriptors {peak}, first scrape answered {time.monotonic() - gone:.2f} s after the clients left")
    assert child.ask("open") == "opened 100"
    _net.wait_for(lambda: child.fds() - before <= 2, 20, "the flood's descriptors to be released")


def test_exit_with_2000_queued_scrapes_whose_clients_left_stays_within_the_exit_timeout(child_factory) -> None:
    child = child_factory(CHILD_SERIES="3000", OTEL_ML_EXIT_TIMEOUT="1")
    flood(child.port, 2000, close_after_send=True)
    assert child.proc.stdin is not None
    started = time.monotonic()
    child.proc.stdin.write("exit\n")
    child.proc.stdin.flush()
    child.proc.wait(60)
    took = time.monotonic() - started
    print(f"exit took {took:.2f} s with OTEL_ML_EXIT_TIMEOUT=1")
    assert child.proc.returncode == 0
    assert took < 1 + 1.5  # the exit timeout, plus the interpreter's own teardown


@pytest.fixture
def endpoint() -> Iterator[tuple[OtelMLPrometheusMetricReader, list[int]]]:
    calls: list[int] = []

    def observe(options: CallbackOptions) -> list[Observation]:
        calls.append(1)
        return [Observation(len(calls))]

    reader = OtelMLPrometheusMetricReader(host="127.0.0.1", port=0, slow_steps=SlowStepBuffer(4))
    provider = MeterProvider(metric_readers=[reader])
    provider.get_meter("faults").create_observable_gauge("faults.collections", callbacks=[observe])
    yield reader, calls
    provider.shutdown()


def test_scrapes_within_a_second_share_one_collection(endpoint) -> None:
    reader, calls = endpoint
    started = time.monotonic()
    bodies = {_net.get(reader.url)[2] for _ in range(20)}
    assert time.monotonic() - started < _server.CACHE_SECONDS  # else the next line could not hold
    assert len(calls) == 1 and len(bodies) == 1 and re.search(r"^faults_collections\{[^}]*\} 1\.0$", bodies.pop(), re.M)
    time.sleep(_server.CACHE_SECONDS + 0.1)
    assert re.search(r"^faults_collections\{[^}]*\} 2\.0$", _net.get(reader.url)[2], re.M) and len(calls) == 2


def test_varying_the_query_or_accept_in_a_loop_renders_at_most_eight_kinds_a_second(endpoint, monkeypatch) -> None:
    """A cache keyed on the raw query string let ``/metrics?x=<n>`` in a loop render on every request."""
    reader, calls = endpoint
    base = f"http://127.0.0.1:{reader.server.port}"
    started = time.monotonic()
    # The query prometheus_client ignores is no new kind: every one of these is the first one's rendering.
    assert {_net.get(f"{base}/metrics?x={n}")[0] for n in range(20)} == {200} and len(calls) == 1
    statuses = [_net.get(f"{base}/metrics", accept=f"text/x-{n}")[0] for n in range(12)]
    page_calls: list[int] = []
    real_page_data = _page.page_data

    def counted(*args: Any, **kwargs: Any) -> Any:
        page_calls.append(1)
        return real_page_data(*args, **kwargs)

    monkeypatch.setattr(_page, "page_data", counted)
    # The page's JSON depends on nothing in the request; its kind was the ninth: refused until a kind expires.
    pages = [_net.get(f"{base}/page/data?n={n}")[0] for n in range(5)]
    assert time.monotonic() - started < _server.CACHE_SECONDS  # else the lines below could not hold
    assert statuses == [200] * (_server._MAX_CACHE_KEYS - 1) + [503] * (13 - _server._MAX_CACHE_KEYS)
    assert len(calls) == _server._MAX_CACHE_KEYS and pages == [503] * 5 and not page_calls
    time.sleep(_server.CACHE_SECONDS + 0.1)
    assert [_net.get(f"{base}/page/data?n={n}")[0] for n in range(5)] == [200] * 5 and len(page_calls) == 1


def test_a_request_head_over_16_kib_is_431_not_a_silent_close(endpoint) -> None:
    reader, calls = endpoint
    with socket.create_connection(("127.0.0.1", reader.server.port), timeout=5) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: " + b"a" * 20_000 + b"\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n") and not calls


def test_head_metrics_is_200_without_a_body(endpoint) -> None:
    reader, _ = endpoint
    connection = http.client.HTTPConnection("127.0.0.1", reader.server.port, timeout=5)
    connection.request("HEAD", "/metrics")
    answer = connection.getresponse()
    assert (answer.status, answer.read()) == (200, b"")
    assert answer.getheader("Content-Type", "").startswith("text/plain")
    assert int(answer.getheader("Content-Length", "0")) == len(_net.get(reader.url)[2].encode())
    connection.close()


def _status_for_host(port: int, host: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.putrequest("GET", "/slow-steps", skip_host=True)
    connection.putheader("Host", host)
    connection.endheaders()
    answer = connection.getresponse()
    answer.read()
    connection.close()
    return answer.status


def test_host_names_other_than_loopback_or_an_ip_are_refused_unless_allowed(endpoint, monkeypatch) -> None:
    reader, _ = endpoint
    port = reader.server.port
    answered = ["127.0.0.1", f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST.", "[::1]:9", "10.1.2.3:80"]
    answered += ["a.localhost", "ip6-localhost", f"{socket.gethostname()}:{port}"]
    assert [_status_for_host(port, host) for host in answered] == [200] * len(answered)
    refused = ["rebind.attacker.example", f"rebind.attacker.example:{port}", "127.0.0.1.nip.io", "[::1"]
    assert [_status_for_host(port, host) for host in refused] == [403] * len(refused)
    # An entry written with its port, as the scrape target is, names the host (it was a 403 for every scrape).
    monkeypatch.setenv("OTEL_ML_ENDPOINT_ALLOWED_HOSTS", "trainer.ml.svc, other.ml.svc:9464")
    allowing = OtelMLPrometheusMetricReader(host="127.0.0.1", port=0)
    try:
        assert _status_for_host(allowing.server.port, "trainer.ml.svc:9464") == 200
        assert _status_for_host(allowing.server.port, "other.ml.svc:9464") == 200
        assert _status_for_host(allowing.server.port, "Other.ML.svc.") == 200
        assert _status_for_host(allowing.server.port, "rebind.attacker.example") == 403
    finally:
        allowing.shutdown()
    anyone = OtelMLPrometheusMetricReader(host="127.0.0.1", port=0, allowed_hosts=("*",))
    try:
        assert _status_for_host(anyone.server.port, "rebind.attacker.example") == 200
    finally:
        anyone.shutdown()


def test_requests_beyond_the_queue_bound_are_503_at_once() -> None:
    release = threading.Event()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        release.wait(30)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done\n"]

    server = EmbeddedServer("127.0.0.1", 0, app)
    assert server.start()
    extra = 10

    def ask(_: int) -> tuple[int, str | None]:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        connection.request("GET", "/slow")  # not /metrics: no cache, each request needs the app
        answer = connection.getresponse()
        answer.read()
        connection.close()
        return answer.status, answer.getheader("Retry-After")

    try:
        with ThreadPoolExecutor(_server.MAX_QUEUED + extra) as pool:
            futures = [pool.submit(ask, index) for index in range(_server.MAX_QUEUED + extra)]
            _net.wait_for(lambda: sum(f.done() for f in futures) == extra, 10, "the 503s")
            assert server._queued == _server.MAX_QUEUED
            release.set()
            results = Counter(f.result() for f in futures)
        assert results == {(200, None): _server.MAX_QUEUED, (503, "1"): extra}
    finally:
        release.set()
        server.stop()


def test_binding_every_interface_warns_once_that_slow_steps_is_exposed(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="otel_ml"):
        reader = OtelMLPrometheusMetricReader(host="0.0.0.0", port=0)
    try:
        (record,) = caplog.records
        assert record.levelno == logging.WARNING
        assert record.getMessage().startswith(
            f"otel_ml: /metrics and /slow-steps are served on 0.0.0.0:{reader.server.port}, which other machines can "
            "reach: /slow-steps shows the slow steps' spans"
        )
    finally:
        reader.shutdown()
    with caplog.at_level(logging.WARNING, logger="otel_ml"):
        OtelMLPrometheusMetricReader(host="127.0.0.1", port=0).shutdown()
    assert len(caplog.records) == 1


@pytest.mark.parametrize("host", ["[::1]", "::1", "ip6-localhost", "localhost"])
def test_bracketed_ipv6_and_host_names_are_resolved(host, caplog) -> None:
    with caplog.at_level(logging.ERROR, logger="otel_ml"):
        reader = OtelMLPrometheusMetricReader(host=host, port=0)
    try:
        try:
            expected = socket.getaddrinfo(host.strip("[]"), 0, type=socket.SOCK_STREAM)
        except socket.gaierror:  # this machine's /etc/hosts has no such name: the one line says what is accepted
            (record,) = caplog.records
            assert f"cannot serve /metrics on '{host}': no address nor a name this host resolves" in record.getMessage()
            assert "an IPv6 address (bracketed or not: [::1] or ::1)" in record.getMessage()
            return
        assert reader.server.running and caplog.records == []
        address = next((info[4][0] for info in expected if info[0] == socket.AF_INET), expected[0][4][0])
        assert reader.server.host == address
        assert (
            reader.url
            == (f"http://[{address}]:" if ":" in address else f"http://{address}:")
            + str(reader.server.port)
            + "/metrics"
        )
        assert _net.get(reader.url)[0] == 200
    finally:
        reader.shutdown()


def test_a_name_that_does_not_resolve_is_one_line_saying_what_is_accepted(caplog) -> None:
    with caplog.at_level(logging.ERROR, logger="otel_ml"):
        reader = OtelMLPrometheusMetricReader(host="no-such-host.invalid", port=0)
    (record,) = caplog.records
    assert not reader.server.running
    assert record.getMessage().startswith(
        "otel_ml: cannot serve /metrics on 'no-such-host.invalid': no address nor a name this host resolves ("
    )
    assert "OTEL_EXPORTER_PROMETHEUS_HOST accepts an IPv4 address, an IPv6 address" in record.getMessage()


@pytest.mark.parametrize("names", ["prometheus", "prometheus,otel_ml_prometheus", " prometheus "])
def test_the_standard_prometheus_name_serves_the_hardened_endpoint(names, monkeypatch) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", names)
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", "0")
    readers = _sdk.metric_readers()
    try:
        assert [type(reader) for reader in readers] == [OtelMLPrometheusMetricReader]
        (reader,) = readers
        assert isinstance(reader, OtelMLPrometheusMetricReader)
        assert _net.get(reader.url.removesuffix("/metrics") + "/slow-steps")[0] == 200
    finally:
        for reader in readers:
            reader.shutdown()


def test_a_taken_port_raises_only_for_a_serving_command_and_logs_once_otherwise(caplog) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with serving_only("otel-ml test"), pytest.raises(EndpointUnavailable) as raised:
            OtelMLPrometheusMetricReader(host="127.0.0.1", port=port)
        assert str(raised.value) == (
            f"otel-ml test: cannot serve /metrics on 127.0.0.1:{port} (Address already in use); choose another "
            "address or port (--host/--port, OTEL_EXPORTER_PROMETHEUS_HOST/OTEL_EXPORTER_PROMETHEUS_PORT)"
        )
        with caplog.at_level(logging.ERROR, logger="otel_ml"):
            reader = OtelMLPrometheusMetricReader(host="127.0.0.1", port=port)
        (record,) = caplog.records
        assert (
            not reader.server.running and "The program continues without the embedded endpoint" in record.getMessage()
        )


def test_otel_ml_gpu_on_a_taken_port_exits_1_with_one_line() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "OTEL_ML_GPU_NVML_MODULE": "tests.fake_nvml",
            "PYTHONPATH": str(ROOT),
            "OTEL_METRICS_EXPORTER": "prometheus",
        }
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "otel_ml.distro.cli", "gpu", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if "ERROR" in line or "Traceback" in line]
    assert len(lines) == 1, done.stderr
    assert lines[0].endswith(
        f"ERROR otel-ml gpu: cannot serve /metrics on 127.0.0.1:{port} (Address already in use); choose another "
        "address or port (--host/--port, OTEL_EXPORTER_PROMETHEUS_HOST/OTEL_EXPORTER_PROMETHEUS_PORT)"
    )
    assert "serving" not in done.stderr and time.monotonic() - started < 30


def test_ensure_providers_inside_serving_only_raises_on_a_taken_port_and_installs_nothing() -> None:
    """What ``otel-ml tensorboard`` calls (in a fresh process: the global provider can be set only once)."""
    program = textwrap.dedent(
        """
        from opentelemetry import metrics
        from otel_ml.distro import _sdk
        from otel_ml.distro.endpoint import EndpointUnavailable, serving_only

        try:
            with serving_only("otel-ml tensorboard"):
                _sdk.ensure_providers()
        except EndpointUnavailable as exc:
            print(exc)
        print(type(metrics.get_meter_provider()).__name__)
        """
    )
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "OTEL_METRICS_EXPORTER": "otel_ml_prometheus",
            "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
            "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
        }
        done = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"otel-ml tensorboard: cannot serve /metrics on 127.0.0.1:{port} (Address already in use); choose another "
        "address or port (--host/--port, OTEL_EXPORTER_PROMETHEUS_HOST/OTEL_EXPORTER_PROMETHEUS_PORT)",
        "_ProxyMeterProvider",
    ]
    assert done.stderr == ""
