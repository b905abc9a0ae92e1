"""Multiprocess mode under real gunicorn and uWSGI: a killed endpoint process comes back, with every count.

The deployment's one endpoint process can die on its own (OOM-killed, a
``SIGKILL`` from an operator, a crash) while the server lives on. A live
worker's publication loop starts it again within seconds: exactly one
process, on the same port with the same Host check, serving the same totals
(the workers' files and the dead workers' archive are on disk), with one
WARNING in the server's log. When the port has been taken meanwhile, one
ERROR and a back-off, not a process started every second.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from tests._gunicorn import REQUESTS_SERIES, Gunicorn, gunicorn, load, uwsgi
from tests._net import get, wait_for

COUNT = REQUESTS_SERIES + "_count"
MARK = b"_OTEL_ML_MULTIPROCESS_ENDPOINT_PROCESS="
RESTART_BOUND = 10.0  # seconds from the kill to /metrics answering again (1 s checks, a Python start, a shared CPU)
DIED = "multiprocess endpoint process"
RECYCLE = 60  # --max-requests: no worker is recycled by the first 60 requests (the restart comes from a live one)


def _endpoint_processes(server: Gunicorn) -> set[int]:
    """Live (not zombie) processes marked as an endpoint process and serving this deployment's directory."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            command = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and MARK in environ and str(server.directory).encode() in command:
            found.add(int(entry.name))
    return found


def _workers(server: Gunicorn) -> set[int]:
    """The master's live children that serve requests (under --preload the endpoint process may be one too)."""
    return {pid for pid in server.worker_pids() if _state(pid) not in ("", "Z") and not _is_endpoint(pid)}


def _is_endpoint(pid: int) -> bool:
    try:
        return MARK in Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _gone(pid: int) -> bool:
    """Reaped: no process table entry at all, not even a zombie."""
    return not Path(f"/proc/{pid}").exists()


def _kill_endpoint(server: Gunicorn) -> int:
    [victim] = _endpoint_processes(server)
    assert victim == server.endpoint_pid()
    os.kill(victim, signal.SIGKILL)  # an endpoint process of the server we started
    # Dead: a zombie or reaped (its memory goes before its sockets: an unreadable environ is not enough).
    wait_for(lambda: _gone(victim) or _state(victim) == "Z", 5, "the endpoint process to die", interval=0.01)
    return victim


def _bind(port: int) -> socket.socket | None:
    try:
        return socket.create_server(("127.0.0.1", port))
    except OSError:
        return None  # the killed process's connections are still closing


def _host_check_refuses_rebinding(server: Gunicorn) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.metrics_port, timeout=5)
    try:
        conn.putrequest("GET", "/metrics", skip_host=True)
        conn.putheader("Host", f"rebind.example:{server.metrics_port}")
        conn.endheaders()
        assert conn.getresponse().status == 403
    finally:
        conn.close()


def _lines(server: Gunicorn, level: str) -> list[str]:
    return [line for line in server.log.read_text(errors="replace").splitlines() if line.startswith(level)]


def _in_background(action: Callable[[], None]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def _deployment(kind: str, tmp_path: Path) -> AbstractContextManager[Gunicorn]:
    if kind.startswith("gunicorn"):
        args: tuple[str, ...] = ("--max-requests", str(RECYCLE), "--max-requests-jitter", "0")
        if kind == "gunicorn --preload":  # the master publishes too: it may be the one that restarts
            args += ("--preload",)
        return gunicorn(tmp_path, "_busy_app:app", *args, workers=3, chdir="tests")
    # uWSGI recycles no worker younger than --min-worker-lifetime (10 s by default).
    return uwsgi(tmp_path, "_busy_app:app", "--max-requests", str(RECYCLE), "--min-worker-lifetime", "1", processes=3)


@pytest.fixture(params=["gunicorn", "gunicorn --preload", "uwsgi"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Gunicorn]:
    with _deployment(request.param, tmp_path) as server:
        yield server


def test_a_killed_endpoint_process_is_restarted_once_with_every_count(deployment: Gunicorn) -> None:
    server = deployment
    load(server.port, 30, clients=3)
    server.wait_total(COUNT, 30, http_route="/predict")
    workers = _workers(server)
    victim = _kill_endpoint(server)
    killed_at = time.monotonic()
    # Requests go on while there is no endpoint: the workers keep publishing, nothing is lost.
    sender, errors = _in_background(lambda: load(server.port, 30, clients=3))
    wait_for(lambda: get(server.metrics_url, timeout=2)[0] == 200, RESTART_BOUND, "/metrics to answer again")
    assert time.monotonic() - killed_at < RESTART_BOUND
    assert _workers(server) == workers, "restarted by a live worker, not by a new one's first publication"
    sender.join(60)
    assert not errors
    server.wait_total(COUNT, 60, http_route="/predict")
    # Exactly one endpoint process, on the same port (scraped above) with the same Host check.
    [restarted] = _endpoint_processes(server)
    assert restarted != victim and restarted == server.endpoint_pid()
    _host_check_refuses_rebinding(server)
    # The dead one was reaped by whoever was its parent: no zombie left behind.
    wait_for(lambda: _gone(victim), 5, f"the killed endpoint process {victim} to be reaped")
    # Its restarter is a worker that --max-requests recycles (or the master, under --preload): the endpoint
    # outlives a recycled one, and is never a zombie.
    restarter = _parent(restarted)
    if restarter == server.proc.pid:
        restarter = min(_workers(server))  # the endpoint outlives any worker
    sent, deadline = 60, time.monotonic() + 60
    while not _gone(restarter) and time.monotonic() < deadline:  # a recycled worker takes a moment to exit
        load(server.port, 15, clients=3)
        sent += 15
        time.sleep(0.5)
    assert _gone(restarter), f"the worker {restarter} was not recycled ({sent} sent)"
    server.wait_total(COUNT, sent, http_route="/predict")
    assert _endpoint_processes(server) == {restarted}
    time.sleep(2.0)  # a few more checks by every worker: still one process, still one line
    assert _endpoint_processes(server) == {restarted}
    warnings = [line for line in _lines(server, "WARNING") if DIED in line]
    assert len(warnings) == 1, warnings
    assert f"(pid {victim})" in warnings[0] and "died" in warnings[0] and f"pid {restarted}" in warnings[0]
    assert not [line for line in _lines(server, "ERROR") if "otel_ml" in line]


def test_an_endpoint_that_cannot_restart_logs_one_error_and_backs_off(tmp_path: Path) -> None:
    with gunicorn(tmp_path, "_busy_app:app", workers=3, chdir="tests") as server:
        load(server.port, 20, clients=3)
        server.wait_total(COUNT, 20, http_route="/predict")
        # Someone else takes the port before any worker notices (a test socket: SO_REUSEADDR, as servers set).
        # The workers are stopped meanwhile, so that none can start the endpoint first.
        workers = server.worker_pids()
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)  # workers of the server we started
        try:
            victim = _kill_endpoint(server)
            squatter = wait_for(lambda: _bind(server.metrics_port), 10, "the killed endpoint's port to be free")
        finally:
            for pid in workers:
                os.kill(pid, signal.SIGCONT)
        try:
            load(server.port, 20, clients=3)
            time.sleep(6.0)  # 3 workers checking every second: 18 starts without a back-off
            state = json.loads((server.directory / "endpoint.state").read_text())
            assert 1 <= state["attempts"] <= 4, state  # at 0, 2 and 6 s (to 1 s late)
            errors = [line for line in _lines(server, "ERROR") if "otel_ml" in line]
            assert len(errors) == 1, errors
            assert f"(pid {victim})" in errors[0] and "Address already in use" in errors[0]
        finally:
            squatter.close()
        # The next attempt after the back-off serves again: the same totals, one WARNING for the whole episode.
        wait_for(lambda: get(server.metrics_url, timeout=2)[0] == 200, 20, "/metrics to answer after the back-off")
        server.wait_total(COUNT, 40, http_route="/predict")
        [serving] = _endpoint_processes(server)
        warnings = [line for line in _lines(server, "WARNING") if DIED in line]
        assert len(warnings) == 1, warnings
        assert f"(pid {victim})" in warnings[0] and f"pid {serving}" in warnings[0] and "failed start" in warnings[0]
        state = json.loads((server.directory / "endpoint.state").read_text())
        assert state["serving"] == serving and "attempts" not in state  # the back-off starts afresh next time


_FORK_IN_START = r"""
import os, subprocess, sys, threading
from otel_ml.distro.multiprocess import _spawn
from otel_ml.distro.multiprocess._mode import Deployment


class PythonForkPopen:  # gevent's subprocess (gunicorn -k gevent): a fork in Python, whose at-fork hooks run
    def __init__(self, *args, **kwargs):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        self.returncode = 0

    def poll(self):
        return 0


subprocess.Popen = PythonForkPopen
start = threading.Thread(target=_spawn.ensure_endpoint, args=(Deployment(sys.argv[1], os.getpid(), False, 1.0),))
start.daemon = True
start.start()
start.join(10)
if start.is_alive():
    os._exit(1)  # the start waits for itself in its own at-fork hook
child = os.fork()  # and a fork of the program's own afterwards
if child == 0:
    os._exit(0)
os.waitpid(child, 0)
os._exit(0)
"""


def test_a_start_that_forks_in_python_does_not_deadlock_on_its_own_lock(tmp_path: Path) -> None:
    """Where ``subprocess`` forks in Python (gevent's, monkey-patched), the at-fork hook runs in the very thread
    that holds the start's lock: it must not wait for itself (the publication thread, and every later fork of
    the worker, would wait for ever)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _FORK_IN_START, str(tmp_path)], timeout=60, check=False)
    assert done.returncode == 0  # 1: deadlocked in its own at-fork hook
