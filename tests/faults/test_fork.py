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


POOL = """
import json, multiprocessing, os, sys, threading, urllib.request
if sys.argv[1] == "top-level":
    import otel_ml
    otel_ml.instrument()  # at top level: spawn runs it again in every worker

def facts(_):
    from opentelemetry import metrics
    provider = metrics.get_meter_provider()
    return {
        "pid": os.getpid(),
        "threads": sorted(t.name for t in threading.enumerate() if t.name.startswith("otel_ml")),
        "sdk": type(provider).__module__.startswith("opentelemetry.sdk"),
    }

if __name__ == "__main__":
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        workers = pool.map(facts, range(16), chunksize=1)
    port = os.environ["OTEL_EXPORTER_PROMETHEUS_PORT"]
    try:
        status = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).status
    except OSError:
        status = None
    print(json.dumps({"workers": list({w["pid"]: w for w in workers}.values()), "parent": facts(0), "scrape": status}))
"""


@pytest.mark.parametrize("how", ["opentelemetry-instrument", "top-level"])
def test_spawn_pool_workers_start_quietly_without_the_endpoint(tmp_path, how) -> None:
    """The forked child's choice for spawn workers: no endpoint, no ERROR; nothing at all when nothing pushes."""
    program = tmp_path / "pool.py"
    program.write_text(POOL)
    env = {**os.environ, "PYTHONPATH": str(_net.ROOT), "OTEL_EXPORTER_PROMETHEUS_PORT": str(_net.free_port())}
    command = [sys.executable, str(program), how]
    if how == "opentelemetry-instrument":
        command = [str(_net.BIN / "opentelemetry-instrument"), *command]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts["parent"]["sdk"] is True and "otel_ml-metrics" in facts["parent"]["threads"]
    assert facts["scrape"] == 200  # the parent serves
    assert 1 <= len(facts["workers"]) <= 4
    # Each worker: no provider, no thread (so no bind attempt): its telemetry had nowhere to go.
    assert all((w["sdk"], w["threads"]) == (False, []) for w in facts["workers"])
    assert "otel_ml" not in done.stderr and "ERROR" not in done.stderr


def test_spawn_pool_workers_keep_push_exporters_like_a_forked_child(tmp_path) -> None:
    program = tmp_path / "pool.py"
    program.write_text(POOL)
    env = {
        **os.environ,
        "PYTHONPATH": str(_net.ROOT),
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(_net.free_port()),
        "OTEL_METRICS_EXPORTER": "otlp,otel_ml_prometheus",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{_net.free_port()}",
        "OTEL_METRIC_EXPORT_INTERVAL": "600000",
        "OTEL_ML_EXIT_TIMEOUT": "0.5",
    }
    command = [str(_net.BIN / "opentelemetry-instrument"), sys.executable, str(program), "auto"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts["scrape"] == 200 and "otel_ml-metrics" in facts["parent"]["threads"]
    # Each worker exports over OTLP (an SDK provider) but serves no endpoint.
    assert all(w["sdk"] is True and "otel_ml-metrics" not in w["threads"] for w in facts["workers"])
    assert "cannot serve /metrics" not in done.stderr


PROCESS = """
import json, multiprocessing, threading

def train(queue):
    import otel_ml
    otel_ml.instrument()  # asked for by the worker itself: instrumented, endpoint included
    queue.put(sorted(t.name for t in threading.enumerate() if t.name.startswith("otel_ml")))

if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=train, args=(queue,))
    process.start()
    print(json.dumps(queue.get(timeout=60)))
    process.join(30)
"""


def test_a_spawned_process_that_instruments_itself_is_instrumented(tmp_path) -> None:
    program = tmp_path / "process.py"
    program.write_text(PROCESS)
    env = {**os.environ, "PYTHONPATH": str(_net.ROOT), "OTEL_EXPORTER_PROMETHEUS_PORT": str(_net.free_port())}
    done = subprocess.run([sys.executable, str(program)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "otel_ml-metrics" in json.loads(done.stdout.strip().splitlines()[-1])
