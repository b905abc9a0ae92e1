"""A forked child of an instrumented program exits promptly and never serves the parent's endpoint.

The documented choice: the child stays silent on the embedded endpoint (the
port is the parent's, and closes with it); push exporters keep working in the
child, whose exit is bounded like the parent's.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from tests import _net

pytestmark = pytest.mark.slow

PROGRAM = """
import json, multiprocessing, os, socket, sys, time, urllib.request
import otel_ml
from opentelemetry import metrics, trace
from otel_ml.distro.endpoint._reader import _live

otel_ml.instrument()
counter = metrics.get_meter("faults").create_counter("faults.forks")
counter.add(1)
server = _live[-1].server

def listens_on_the_port():
    for name in os.listdir("/proc/self/fd"):
        try:
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue  # not a socket
        with sock:
            try:
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) and sock.getsockname()[1] == server.port:
                    return True
            except OSError:
                pass
    return False

def child_facts():
    fd = "open" if listens_on_the_port() else "closed"
    counter.add(1)
    with trace.get_tracer("faults").start_as_current_span("in the child"):
        pass
    return {"listening_fd": fd, "running": server.running, "url": otel_ml.distro.endpoint.embedded_url()}

def mp_target(queue):
    queue.put(child_facts())

mode = sys.argv[1]
started = time.monotonic()
if mode == "fork":
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, json.dumps(child_facts()).encode())
        sys.exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    child = json.loads(os.read(read, 10_000))
    exit_code = os.waitstatus_to_exitcode(status)
else:
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=mp_target, args=(queue,))
    process.start()
    child = queue.get(timeout=30)
    process.join(30)
    exit_code = process.exitcode
took = time.monotonic() - started
scrape = urllib.request.urlopen(server.url, timeout=5)
body = scrape.read().decode()
forks = [line.split()[-1] for line in body.splitlines() if line.startswith("faults_forks_total")]
facts = {"parent_listens": listens_on_the_port(), "child": child, "exit_code": exit_code, "took": took}
print(json.dumps({**facts, "parent": scrape.status, "forks": forks}))
"""


@pytest.mark.parametrize("mode", ["fork", "multiprocessing"])
def test_a_forked_child_exits_at_once_and_does_not_serve(mode) -> None:
    port = _net.free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(_net.ROOT),
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
        "OTEL_TRACES_EXPORTER": "otlp",  # the child's batch processor and exit hook run too
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{_net.free_port()}",
        "OTEL_ML_EXIT_TIMEOUT": "1",
    }
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", PROGRAM, mode], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts["parent_listens"] is True  # the check below can see a listener
    assert facts["child"] == {"listening_fd": "closed", "running": False, "url": None}
    assert facts["exit_code"] == 0
    # The child's exit waits at most OTEL_ML_EXIT_TIMEOUT for its undeliverable span, never for a server thread.
    assert facts["took"] < 2.5
    # The parent still serves, and only its own count: the child's increment stays in the child.
    assert (facts["parent"], facts["forks"]) == (200, ["1.0"])
    assert time.monotonic() - started < 30
    # With the parent gone, nobody holds the port.
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the scrape left a TIME_WAIT, not a listener
        sock.bind(("127.0.0.1", port))
        sock.listen()
