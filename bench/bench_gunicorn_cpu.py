"""CPU time per request of the example service under ``gunicorn -w 4``: otel_ml vs prometheus-flask-exporter.

The same two deployments as ``bench_gunicorn.py``, but the figure is the CPU
time that the whole deployment spends per request: every thread of the
master, the four workers and, for otel_ml, its endpoint process (time on a
CPU, from ``/proc/<pid>/task/<tid>/schedstat``). Throughput on a shared
machine moves with the neighbours' load; CPU seconds per request hardly do,
so this is the figure to steer by. Each sample is one ``hey`` run of N POST requests; each round loads both
deployments once, in a shuffled order; medians over the rounds. A scraper
reads each ``/metrics`` every second throughout (its CPU is counted, as a
Prometheus scrape's would be), and each endpoint's request count must equal
the requests sent, exactly.

    python bench/bench_gunicorn_cpu.py [--rounds 7] [--requests 2000] [--connections 8] [--write] [--base DIR]

``--write`` writes ``bench/results/gunicorn_cpu.md``; without it the table is
only printed. ``--together`` loads the deployments at the same time in each
round (each with its own ``hey``), so that they share whatever else the
machine runs meanwhile: on a busy machine the per-round ratios scatter far
less than with one deployment after the other. ``--base DIR`` adds a third deployment running the otel_ml of
another checkout (``git archive <commit> | tar -x -C DIR``): before and after
a change, in the same rounds.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _common  # noqa: E402
from _paddle_service import hey  # noqa: E402
from bench_gunicorn import Deployment, _save_model, start_load  # noqa: E402


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].decode().split()
    except OSError:
        return None


def _endpoint_pids(owner: int) -> list[int]:
    """otel_ml's endpoint process(es) of the deployment whose master is ``owner`` (they run in their own session)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                args = cmdline.read().split(b"\0")
        except OSError:
            continue
        if b"otel_ml.distro.multiprocess" in args and b"--owner" in args:
            if args[args.index(b"--owner") + 1] == str(owner).encode():
                found.append(int(entry))
    return found


def _task_seconds(pid: int) -> float:
    """CPU time of every live thread of ``pid`` in seconds, from the scheduler's nanosecond counters."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat", "rb") as schedstat:
                total += int(schedstat.read().split()[0])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def cpu_seconds(deployment: Deployment) -> float:
    """CPU time of every live process (every thread) of the deployment: master, workers, otel_ml's endpoint.

    Read from ``/proc/<pid>/task/<tid>/schedstat`` (nanoseconds, where ``stat``
    counts 10 ms ticks). The workers are never recycled here, so no CPU
    leaves with a dead process.
    """
    total = 0.0
    session = deployment.proc.pid
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat(int(entry))
        if fields is not None and int(fields[3]) == session:  # after the comm: state ppid pgrp session
            total += _task_seconds(int(entry))
    for pid in _endpoint_pids(session):
        total += _task_seconds(pid)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--write", action="store_true", help="write bench/results/gunicorn_cpu.md")
    parser.add_argument(
        "--together", action="store_true", help="load every deployment at once in each round (a busy machine)"
    )
    parser.add_argument(
        "--base",
        default=None,
        help="another otel_ml checkout (e.g. `git archive` of a commit) run as a third deployment",
    )
    args = parser.parse_args()
    args.requests -= args.requests % args.connections
    load_before = os.getloadavg()[0]
    tmp = tempfile.mkdtemp(prefix="bench_gunicorn_cpu_")
    model_dir = tempfile.mkdtemp(dir=tmp, prefix="model_")
    _save_model(model_dir)
    deployments = [Deployment(name, tmp, model_dir) for name in ("prometheus-flask-exporter", "otel_ml")]
    if args.base:
        deployments.append(Deployment("otel_ml (base)", tmp, model_dir, Path(args.base).resolve()))
    per_request: dict[str, list[float]] = {d.name: [] for d in deployments}
    idle: dict[str, float] = {}
    rps: dict[str, list[float]] = {d.name: [] for d in deployments}
    scrapes: dict[str, list[float]] = {d.name: [] for d in deployments}
    stop = threading.Event()
    try:
        start_load(deployments, args.connections, stop, scrapes)
        # CPU of an idle deployment (publication, the endpoint's own work, the scrapes), per second.
        time.sleep(1)
        before = {d.name: cpu_seconds(d) for d in deployments}
        time.sleep(5)
        idle = {d.name: (cpu_seconds(d) - before[d.name]) / 5 for d in deployments}

        def variant(deployment: Deployment) -> object:
            def once() -> float:
                start = cpu_seconds(deployment)
                sample = hey(deployment.port, args.requests, args.connections)
                used = cpu_seconds(deployment) - start
                deployment.sent += args.requests
                per_request[deployment.name].append(used / args.requests * 1e3)
                rps[deployment.name].append(sample["rps"])
                return used

            return once

        if args.together:
            for _ in range(args.rounds):  # every deployment under the same neighbours' load
                threads = [threading.Thread(target=variant(d)) for d in deployments]  # type: ignore[arg-type]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
        else:
            _common.interleave({d.name: variant(d) for d in deployments}, args.rounds)  # type: ignore[misc]
        stop.set()
        time.sleep(3)  # a few publication intervals
        counted = {d.name: d.predictions_counted() for d in deployments}
    finally:
        stop.set()
        for deployment in deployments:
            deployment.stop()
    pfe = _common.median(per_request["prometheus-flask-exporter"])
    rows = [
        "| deployment (`gunicorn -w 4`, sync) | CPU ms per request (median) | vs pfe | idle CPU ms per s "
        "| requests/s (median, shared machine) | requests sent | counted on its /metrics |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for d in deployments:
        mine = _common.median(per_request[d.name])
        rows.append(
            f"| {d.name} | {mine:.3f} | {mine / pfe:.3f} | {idle[d.name] * 1e3:.0f} | "
            f"{_common.median(rps[d.name]):.0f} | {d.sent} | {counted[d.name]:.0f} |"
        )
    per_round = [
        f"{o / p:.3f}" for o, p in zip(per_request["otel_ml"], per_request["prometheus-flask-exporter"], strict=True)
    ]
    per_round_base = ""
    if args.base:
        per_base = [f"{o / b:.3f}" for o, b in zip(per_request["otel_ml"], per_request["otel_ml (base)"], strict=True)]
        per_round_base = f"\notel_ml / otel_ml (base: {args.base}) CPU per request, per round: {', '.join(per_base)}\n"
    how = "rounds, the deployments loaded at the same time" if args.together else "interleaved rounds"
    body = (
        f"`hey -n {args.requests} -c {args.connections}` POST /predict (4 rows), {args.rounds} {how}, "
        "medians. CPU = time on a CPU of every thread of the master, the workers and otel_ml's endpoint "
        "process (schedstat, ns); a scraper reads both endpoints every second throughout.\n\n"
        + f"Load average (1 min) at the start and at the end: {load_before:.1f}, {os.getloadavg()[0]:.1f}.\n\n"
        + "\n".join(rows)
        + f"\n\notel_ml / prometheus-flask-exporter CPU per request, per round: {', '.join(per_round)}\n"
        + per_round_base
    )
    command = "python bench/bench_gunicorn_cpu.py " + " ".join(sys.argv[1:])
    if args.write:
        path = _common.write(
            "gunicorn_cpu",
            "CPU per request of the example service under gunicorn -w 4: otel_ml vs prometheus-flask-exporter",
            command,
            body,
        )
        print(path.read_text())
    else:
        print(command + "\n\n" + body)


if __name__ == "__main__":
    main()
