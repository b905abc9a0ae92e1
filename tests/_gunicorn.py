"""A real gunicorn deployment on loopback for the multiprocess tests: started, loaded, scraped, stopped by PID."""

from __future__ import annotations

import http.client
import os
import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests._net import BIN, ROOT, free_port, get, start, stop, wait_for

REQUESTS_SERIES = "http_server_request_duration_seconds"
PREDICT_BODY = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'


@dataclass
class Gunicorn:
    proc: Any
    port: int
    metrics_port: int
    tmp: Path
    log: Path

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def directory(self) -> Path:
        return self.tmp / f"otel_ml-multiprocess-{os.getuid()}-{self.proc.pid}"

    def worker_pids(self) -> set[int]:
        """The live workers: the master's children that publish (the endpoint process is not one)."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return {int(pid) for pid in children}

    def endpoint_pid(self) -> int:
        return int((self.directory / "endpoint.lock").read_text().split()[0])

    def samples(self, accept: str | None = None) -> list[Any]:
        status, _, body = get(self.metrics_url, accept=accept, timeout=5)
        assert status == 200, body
        return [s for family in text_string_to_metric_families(body) for s in family.samples]

    def total(self, name: str, samples: list[Any] | None = None, **labels: Any) -> float:
        return sum(
            s.value
            for s in (samples if samples is not None else self.samples())
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def wait_total(self, name: str, expected: float, timeout: float = 20.0, **labels: Any) -> None:
        """Wait until the scrape's ``name`` sums to ``expected``, then check it stays there (never above)."""
        seen: list[float] = []

        def reached() -> bool:
            seen.append(self.total(name, None, **labels))
            assert seen[-1] <= expected, f"{name} reads {seen[-1]} > {expected}"
            return seen[-1] == expected

        wait_for(reached, timeout, f"{name} to sum to {expected} (read {seen[-1:]})", interval=0.1)
        time.sleep(0.5)  # a few more publications: still exact
        assert self.total(name, None, **labels) == expected


def post(port: int, path: str = "/predict", body: bytes = PREDICT_BODY, timeout: float = 60) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def load(port: int, requests: int, clients: int = 8) -> None:
    """``requests`` predictions from ``clients`` threads; every one must answer 200."""
    with ThreadPoolExecutor(clients) as pool:
        statuses = list(pool.map(lambda _: post(port), range(requests)))
    assert statuses == [200] * requests


@contextmanager
def gunicorn(
    tmp: Path,
    app: str,
    *args: str,
    workers: int = 4,
    env: dict[str, str] | None = None,
    instrument: bool = False,
    chdir: str = "examples",
    ready_path: str = "/health",
    endpoint: bool = True,
) -> Iterator[Gunicorn]:
    """``gunicorn -w N ... app`` (under ``opentelemetry-instrument`` if asked), serving once every worker is up."""
    port = free_port()
    prefix = [str(BIN / "opentelemetry-instrument")] if instrument else []
    command = [
        *prefix,
        sys.executable,
        str(BIN / "gunicorn"),
        "-w",
        str(workers),
        "-b",
        f"127.0.0.1:{port}",
        "--chdir",
        str(ROOT / chdir),
        "--graceful-timeout",
        "5",
        *args,
        app,
    ]
    with serve(tmp, command, port, env=env, ready_path=ready_path, endpoint=endpoint) as server:
        yield server


@contextmanager
def uwsgi(tmp: Path, module: str, *args: str, processes: int = 3, chdir: str = "tests") -> Iterator[Gunicorn]:
    """``uwsgi --master --processes N --enable-threads ... --module MODULE``, once it serves."""
    port = free_port()
    command = [str(BIN / "uwsgi"), "--master", "--processes", str(processes), "--enable-threads", "--die-on-term"]
    command += ["--http-socket", f"127.0.0.1:{port}", "--chdir", str(ROOT / chdir), "--disable-logging", *args]
    with serve(tmp, [*command, "--module", module], port) as server:
        yield server


@contextmanager
def serve(
    tmp: Path,
    command: list[str],
    port: int,
    *,
    env: dict[str, str] | None = None,
    ready_path: str = "/health",
    endpoint: bool = True,
) -> Iterator[Gunicorn]:
    """Run a pre-fork server's ``command`` listening on ``port``; stop it and check its endpoint process left."""
    metrics_port = free_port()
    environment = {
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(metrics_port),
        "OTEL_ML_MULTIPROCESS_INTERVAL": "0.1",
        "TMPDIR": str(tmp),
        **(env or {}),
    }
    environment.pop("OTEL_ML_TEST_MODE", None)
    log = tmp / "server.log"
    proc = start(command, env=environment, log=log)
    server = Gunicorn(proc, port, metrics_port, tmp, log)
    try:
        wait_for(lambda: _answers(port, ready_path), 90, f"gunicorn to serve (log: {log})")
        if endpoint:
            wait_for(lambda: get(server.metrics_url, timeout=2)[0] == 200, 30, f"the endpoint to serve (log: {log})")
        yield server
    finally:
        serving: int | None = None
        if (server.directory / "endpoint.lock").exists():
            serving = server.endpoint_pid()
        stop(proc)
        if serving is not None:
            # The endpoint process leaves by itself once the master is gone (and removes the directory).
            wait_for(lambda: not _alive(serving), 10, "the endpoint process to exit")
            assert not server.directory.exists()


def _answers(port: int, path: str) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    finally:
        conn.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (its parent has not reaped it) is gone for our purpose.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill(pid: int) -> None:
    """SIGKILL one process we started (a worker of our gunicorn)."""
    os.kill(pid, signal.SIGKILL)
