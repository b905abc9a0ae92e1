"""What otel_ml does when things go wrong: time to exit with the collector down, a forked child, connection floods.

Every case runs in a fresh subprocess against an otel_ml checkout (``--root``,
default this one) and, with ``--baseline``, against another (e.g. the main
branch) in the same run, interleaved; the figures are medians.

    python bench/bench_faults.py --rounds 3 --baseline /work/main
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleave, median, write

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 40.0  # seconds: a case that takes longer is reported as "> 40 s"

EXIT = """
import otel_ml
otel_ml.instrument()
from opentelemetry import metrics, trace
counter = metrics.get_meter("bench").create_counter("bench.exits")
for _ in range(5):
    with trace.get_tracer("bench").start_as_current_span("work"):
        counter.add(1)
print("done", flush=True)
"""

FORK = """
import os, sys, time
import otel_ml
otel_ml.instrument()
started = time.monotonic()
pid = os.fork()
if pid == 0:
    sys.exit(0)
os.waitpid(pid, 0)
print("done", time.monotonic() - started, flush=True)
"""

FLOOD = """
import json, os, socket, threading, time, urllib.request
from concurrent.futures import ThreadPoolExecutor
import otel_ml
from otel_ml.distro.endpoint._reader import _live
otel_ml.instrument()
url = _live[-1].url
port = int(url.rsplit(":", 1)[1].split("/")[0])

def scrape(_):
    started = time.monotonic()
    try:
        urllib.request.urlopen(url, timeout=5).read()
        return time.monotonic() - started
    except Exception:
        return None

def connect(_):
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        return None

with ThreadPoolExecutor(200) as pool:
    burst = list(pool.map(scrape, range(200)))
fds, threads = len(os.listdir("/proc/self/fd")), threading.active_count()
give_up = time.monotonic() + 10  # a server that stops accepting makes each connect wait 5 s
idle = [connect(i) if time.monotonic() < give_up else None for i in range(1500)]
opened = sum(1 for sock in idle if sock is not None)
time.sleep(1.0)
held = len(os.listdir("/proc/self/fd")) - fds - opened
grown = threading.active_count() - threads
during = scrape(0)
answered = [t for t in burst if t is not None]
print(json.dumps({"answered": len(answered), "burst_max": max(answered, default=0), "opened": opened,
                  "held": held, "threads": grown, "scrape": during}))
"""


def burst_during_fit(root: Path, rounds: int) -> list[tuple[int, float]]:
    """(answered of 200, slowest answer) per round of 200 concurrent scrapes (5 s timeout) during a Keras fit."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    args = [sys.executable, "examples/keras_train.py", "--slow-step=-1", "--epochs=1000", "--samples=512"]
    proc = subprocess.Popen(args, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/metrics"

    def scrape(_: int) -> float | None:
        started = time.monotonic()
        try:
            body = urllib.request.urlopen(url, timeout=5).read()
            return time.monotonic() - started if b"ml_train_steps_total{" in body else None
        except OSError:
            return None

    try:
        deadline = time.monotonic() + 120
        while scrape(0) is None and time.monotonic() < deadline:
            time.sleep(0.5)  # until training has started
        results = []
        for _ in range(rounds):
            with ThreadPoolExecutor(200) as pool:
                answered = [t for t in pool.map(scrape, range(200)) if t is not None]
            results.append((len(answered), max(answered, default=0.0)))
            time.sleep(1)
        return results
    finally:
        proc.kill()
        proc.wait()


def run(root: Path, program: str, env: dict[str, str]) -> tuple[float, str]:
    """(seconds from the program's "done" or JSON line to its exit, that line); inf past LIMIT."""
    full = {**os.environ, "PYTHONPATH": str(root), "OTEL_EXPORTER_PROMETHEUS_PORT": "0", **env}
    proc = subprocess.Popen(
        [sys.executable, "-c", program], cwd=root, env=full, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    seen: list[tuple[float, str]] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(("done", "{")):
                seen.append((time.monotonic(), line.strip()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc.wait(LIMIT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the program and a hung child of it
        proc.wait()
        return float("inf"), seen[0][1] if seen else ""
    ended = time.monotonic()
    reader.join(5)
    return (ended - seen[0][0], seen[0][1]) if seen else (float("inf"), "")


def otlp(protocol: str, port: int) -> dict[str, str]:
    return {
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
    }


def seconds(value: float) -> str:
    return f"> {LIMIT:.0f} s" if value == float("inf") else f"{value:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--baseline", type=Path, default=None)
    args = parser.parse_args()
    roots = {"this branch": args.root, **({"baseline": args.baseline} if args.baseline else {})}
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1024)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    cases = {
        "collector port closed, gRPC": otlp("grpc", closed.getsockname()[1]),
        "collector never answers, gRPC": otlp("grpc", silent.getsockname()[1]),
        "collector port closed, HTTP": otlp("http/protobuf", closed.getsockname()[1]),
        "collector never answers, HTTP": otlp("http/protobuf", silent.getsockname()[1]),
    }
    variants = {
        f"{case}|{name}": (lambda root=root, env=env: run(root, EXIT, env)[0])
        for case, env in cases.items()
        for name, root in roots.items()
    }
    variants.update(
        {f"forked child exits|{name}": (lambda root=root: _fork_time(root)) for name, root in roots.items()}
    )
    samples = interleave(variants, args.rounds)
    rows = [
        f"| {key.split('|')[0]} | {key.split('|')[1]} | {seconds(median(values))} |" for key, values in samples.items()
    ]
    floods = {name: json.loads(run(root, FLOOD, {})[1] or "{}") for name, root in roots.items()}
    body = "Time to exit, measured from the program's last line to its exit (default OTEL_ML_EXIT_TIMEOUT).\n\n"
    body += "| case | otel_ml | median |\n|---|---|---|\n" + "\n".join(sorted(rows)) + "\n\n"
    body += "Embedded endpoint: 200 concurrent scrapes, then 1,500 idle (half-open) connections.\n\n"
    body += "| otel_ml | burst answered (of 200) | slowest answer | idle connections made | sockets held | "
    body += "threads added | scrape meanwhile |\n|---|---|---|---|---|---|---|\n"
    for name, flood in floods.items():
        during = flood.get("scrape")
        body += (
            f"| {name} | {flood.get('answered')} | {flood.get('burst_max', 0):.2f} s | {flood.get('opened')} | "
            f"{flood.get('held')} | "
            f"{flood.get('threads')} | {'no answer' if during is None else f'{during:.3f} s'} |\n"
        )
    body += "\n200 concurrent scrapes (5 s client timeout) during a Keras fit (`examples/keras_train.py`), "
    body += f"{args.rounds + 1} rounds:\n\n| otel_ml | answered (of 200), per round | slowest answer |\n|---|---|---|\n"
    for name, root in roots.items():
        rounds = burst_during_fit(root, args.rounds + 1)
        answered = ", ".join(str(n) for n, _ in rounds)
        body += f"| {name} | {answered} | {max(t for _, t in rounds):.2f} s |\n"
    command = f"python bench/bench_faults.py --rounds {args.rounds}" + (" --baseline <main>" if args.baseline else "")
    print(write("faults", "What otel_ml does when things go wrong", command, body).read_text())


def _fork_time(root: Path) -> float:
    _, line = run(root, FORK, {})
    return float(line.split()[1]) if line.startswith("done") else float("inf")


if __name__ == "__main__":
    main()
