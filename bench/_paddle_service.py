"""Part 2 of bench_paddle.py: the example service three ways under ``hey``, interleaved rounds, medians.

- ``without instrumentation``: ``examples/paddle_service.py --no-otel``;
- ``prometheus-flask-exporter``: the seeds' design (``bench/_pfe_service.py``);
- ``otel_ml``: the example as shipped (``otel_ml.instrument()``,
  ``otel_ml.serving.instrument_flask_app``, embedded ``/metrics``, no trace exporter).

Each sample is one ``hey`` run (a real HTTP load generator, Debian package
``hey``) of N POST requests from C connections against one service; each
round runs every service once, in a shuffled order. The three servers run
side by side on the same cores as ``hey``, idle while another is loaded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import _common

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "paddle_service.py"
PFE = ROOT / "bench" / "_pfe_service.py"
BODY = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]] * 4})
SERVICES = {
    "without instrumentation": [str(EXAMPLE), "--no-otel"],
    "prometheus-flask-exporter": [str(PFE)],
    "otel_ml": [str(EXAMPLE)],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_service(tmp: str, args: list[str]) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "OTEL_EXPORTER_PROMETHEUS_PORT": str(_free_port()), "GLOG_minloglevel": "2"}
    env.pop("OTEL_TRACES_EXPORTER", None)  # as a user starts it: no OTLP endpoint, so no trace exporter
    cmd = [sys.executable, *args, "--port", "0", "--model-dir", tempfile.mkdtemp(dir=tmp)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("serving on http://127.0.0.1:"):
            return proc, int(line.rsplit(":", 1)[1])
    raise RuntimeError(f"{args[0]} exited with {proc.wait()} before serving")


def hey(port: int, requests: int, connections: int) -> dict[str, float]:
    """One ``hey`` run: requests per second, p50 and p99 in ms; every answer must be 200."""
    out = subprocess.run(
        [
            "hey", "-n", str(requests), "-c", str(connections), "-m", "POST", "-T", "application/json",
            "-d", BODY, f"http://127.0.0.1:{port}/predict",
        ],
        capture_output=True, text=True, check=True, timeout=600,
    ).stdout  # fmt: skip
    codes = dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", out))
    if codes != {"200": str(requests)}:
        raise RuntimeError(f"hey saw status codes {codes}, expected {requests} x 200:\n{out}")

    def seconds(pattern: str) -> float:
        match = re.search(pattern, out)
        if match is None:
            raise RuntimeError(f"no {pattern!r} in hey's output:\n{out}")
        return float(match.group(1))

    return {
        "rps": seconds(r"Requests/sec:\s+([\d.]+)"),
        "p50": seconds(r"50%+ in ([\d.]+) secs") * 1e3,
        "p99": seconds(r"99%+ in ([\d.]+) secs") * 1e3,
    }


def bench_service(rounds: int, requests: int, connections: int, tmp: str) -> tuple[str, dict[str, float]]:
    if shutil.which("hey") is None:
        raise SystemExit("the service benchmark needs hey (apt-get install hey)")
    procs = {name: start_service(tmp, args) for name, args in SERVICES.items()}
    results: dict[str, dict[str, list[float]]] = {n: {"p50": [], "p99": [], "rps": []} for n in procs}
    try:

        def variant(name: str) -> Any:
            def once() -> float:
                sample = hey(procs[name][1], requests, connections)
                for key, value in sample.items():
                    results[name][key].append(value)
                return sample["rps"]

            return once

        for name in procs:
            hey(procs[name][1], max(200, requests // 10), connections)  # warm-up, untimed
        _common.interleave({n: variant(n) for n in procs}, rounds)
    finally:
        for proc, _ in procs.values():
            proc.terminate()
            proc.wait(timeout=20)
    med = {name: {k: _common.median(v) for k, v in r.items()} for name, r in results.items()}
    base, pfe = med["without instrumentation"], med["prometheus-flask-exporter"]
    rows = [
        "| service | requests/s | p50 ms | p99 ms | throughput vs none | vs prometheus-flask-exporter "
        "| p50 vs pfe | p99 vs pfe |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    summary: dict[str, float] = {}
    for name, m in med.items():
        rows.append(
            f"| {name} | {m['rps']:.0f} | {m['p50']:.2f} | {m['p99']:.2f} | {m['rps'] / base['rps']:.3f} | "
            f"{m['rps'] / pfe['rps']:.3f} | {m['p50'] / pfe['p50']:.3f} | {m['p99'] / pfe['p99']:.3f} |"
        )
        summary.update({f"{name}|{k}": v for k, v in m.items()})
    return "\n".join(rows), summary
