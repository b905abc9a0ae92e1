"""The example service with traces on over OTLP, at 100 % and 10 % sampling, against the seeds' design.

Five services side by side, under the same ``hey`` load (N POST /predict of 4
rows from C connections), one sample each per round in a shuffled order;
medians over the rounds:

- ``without instrumentation``: ``examples/paddle_service.py --no-otel``;
- ``prometheus-flask-exporter``: the seeds' design (``bench/_pfe_service.py``);
- ``otel_ml``: the example as shipped (metrics on the embedded ``/metrics``, no trace exporter);
- ``otel_ml + traces 100 %``: the same, with ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` set (http/protobuf)
  and ``OTEL_TRACES_SAMPLER=parentbased_traceidratio``, ``OTEL_TRACES_SAMPLER_ARG=1``: every request
  a server span and a ``paddle.predictor.run`` child, batched and exported;
- ``otel_ml + traces 10 %``: the same at ``OTEL_TRACES_SAMPLER_ARG=0.1``.

The trace endpoint is ``bench/_otlp_sink.py`` (one per traced service, its
own process): it decodes each export and counts the spans, so the table also
says how many spans arrived against the requests served.

    python bench/bench_serving_traces.py [--rounds 5] [--requests 2000] [--connections 4] [--out]

Needs the ``bench`` extra (prometheus-flask-exporter) and ``hey``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _common  # noqa: E402
from _paddle_service import EXAMPLE, PFE, _free_port, hey  # noqa: E402

SINK = HERE / "_otlp_sink.py"
TRACED = {"otel_ml + traces 100 %": "1", "otel_ml + traces 10 %": "0.1"}
SERVICES: dict[str, list[str]] = {
    "without instrumentation": [str(EXAMPLE), "--no-otel"],
    "prometheus-flask-exporter": [str(PFE)],
    "otel_ml": [str(EXAMPLE)],
    **{name: [str(EXAMPLE)] for name in TRACED},
}


def _start(cmd: list[str], env: dict[str, str], ready: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(ready):
            return proc, int(line.rsplit(" ", 1)[-1].rsplit(":", 1)[-1])
    raise RuntimeError(f"{cmd[1]} exited with {proc.wait()} before {ready!r}")


def start(name: str, tmp: str, sinks: dict[str, tuple[subprocess.Popen[str], int]]) -> tuple[Any, int]:
    env = {**os.environ, "OTEL_EXPORTER_PROMETHEUS_PORT": str(_free_port()), "GLOG_minloglevel": "2"}
    for var in (
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_TRACES_SAMPLER",
        "OTEL_TRACES_SAMPLER_ARG",
    ):
        env.pop(var, None)
    if name in TRACED:
        sinks[name] = _start([sys.executable, str(SINK)], env, "listening on ")
        env.update(
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"http://127.0.0.1:{sinks[name][1]}/v1/traces",
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_TRACES_SAMPLER="parentbased_traceidratio",
            OTEL_TRACES_SAMPLER_ARG=TRACED[name],
        )
    cmd = [sys.executable, *SERVICES[name], "--port", "0", "--model-dir", tempfile.mkdtemp(dir=tmp)]
    return _start(cmd, env, "serving on http://127.0.0.1:")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (``/proc/PID/stat``, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000, help="hey -n, per sample")
    parser.add_argument("--connections", type=int, default=4, help="hey -c")
    parser.add_argument("--out", action="store_true", help="write bench/results/serving_traces.md")
    args = parser.parse_args()
    if shutil.which("hey") is None:
        raise SystemExit("needs hey (apt-get install hey)")
    results: dict[str, dict[str, list[float]]] = {n: {"p50": [], "p99": [], "rps": [], "cpu_ms": []} for n in SERVICES}
    served = dict.fromkeys(SERVICES, 0)
    sinks: dict[str, tuple[subprocess.Popen[str], int]] = {}
    spans: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        procs = {name: start(name, tmp, sinks) for name in SERVICES}
        try:

            def variant(name: str) -> Any:
                def once() -> float:
                    before = cpu_seconds(procs[name][0].pid)
                    sample = hey(procs[name][1], args.requests, args.connections)
                    # CPU time per request (the service process, its exporting thread included): unlike
                    # requests/s it does not move with what the machine's other processes do.
                    sample["cpu_ms"] = (cpu_seconds(procs[name][0].pid) - before) / args.requests * 1e3
                    served[name] += args.requests
                    for key, value in sample.items():
                        results[name][key].append(value)
                    return sample["rps"]

                return once

            warm = max(200, args.requests // 10)
            for name in procs:
                hey(procs[name][1], warm, args.connections)  # warm-up, untimed
                served[name] += warm
            _common.interleave({n: variant(n) for n in procs}, args.rounds)
        finally:
            for proc, _ in procs.values():
                # Ctrl-C: the example stops serving and exits normally, so otel_ml flushes its last span batch
                # (Paddle turns SIGTERM into an abort, which would lose up to one batch delay of spans).
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=20)
            for name, (sink, port) in sinks.items():
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=10) as answer:
                    spans[name] = json.load(answer)["spans"]
                sink.terminate()
                sink.wait(timeout=20)
    med = {name: {k: _common.median(v) for k, v in r.items()} for name, r in results.items()}
    pfe, plain = med["prometheus-flask-exporter"], med["otel_ml"]
    rows = [
        "| service | CPU ms per request | CPU vs pfe | requests/s | p50 ms | p99 ms | throughput vs pfe | p99 vs pfe "
        "| throughput vs otel_ml without traces | spans received / requests served |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, m in med.items():
        got = (
            f"{spans[name]:,} / {served[name]:,} ({spans[name] / served[name]:.3f} per request)"
            if name in spans
            else ""
        )
        rows.append(
            f"| {name} | {m['cpu_ms']:.3f} | {m['cpu_ms'] / pfe['cpu_ms']:.3f} | "
            f"{m['rps']:.0f} | {m['p50']:.2f} | {m['p99']:.2f} | {m['rps'] / pfe['rps']:.3f} | "
            f"{m['p99'] / pfe['p99']:.3f} | {m['rps'] / plain['rps']:.3f} | {got} |"
        )
    rounds = {name: [round(v) for v in r["rps"]] for name, r in results.items()}
    cpu = {name: [f"{v:.2f}" for v in r["cpu_ms"]] for name, r in results.items()}
    body = (
        f"`hey -n {args.requests} -c {args.connections}`, {args.rounds} interleaved rounds, medians; "
        f"load average at the end: {os.getloadavg()[0]:.1f}.\n\n" + "\n".join(rows) + "\n\n"
        "Requests/s of every round, in order:\n\n"
        + "\n".join(f"- {name}: {', '.join(map(str, v))}" for name, v in rounds.items())
        + "\n\nCPU ms per request of every round:\n\n"
        + "\n".join(f"- {name}: {', '.join(v)}" for name, v in cpu.items())
        + "\n"
    )
    print(body)
    if args.out:
        command = "python bench/bench_serving_traces.py " + " ".join(a for a in sys.argv[1:])
        _common.write("serving_traces", "The example service with traces over OTLP", command.strip(), body)


if __name__ == "__main__":
    main()
