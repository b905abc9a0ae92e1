"""The example service under ``gunicorn -w 4``: otel_ml's multiprocess endpoint vs prometheus-flask-exporter's.

Two deployments of ``examples/paddle_service.py`` side by side, each
``gunicorn -w 4`` (sync workers): otel_ml as shipped (``wsgi_app()``: one
``/metrics`` for the four workers, served by its endpoint process) and the
seeds' design in prometheus-flask-exporter's multiprocess mode
(``bench/_pfe_gunicorn.py``). Each sample is one ``hey`` run of N POST
requests from C connections; each round loads both once, in a shuffled order
(the other deployment idles meanwhile); medians over the rounds. While the
load runs, a scraper reads each deployment's ``/metrics`` every second, as
Prometheus would. At the end each endpoint's request count must equal the
requests sent, exactly.

    python bench/bench_gunicorn.py [--rounds 7] [--requests 2000] [--connections 8] [--out PATH]

``--out PATH`` writes the table there instead of ``bench/results/gunicorn.md``.

Needs gunicorn, the ``bench`` extra (prometheus-flask-exporter) and ``hey``.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import _common  # noqa: E402
from _paddle_service import _free_port, hey  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

BIN = Path(sys.executable).parent


def _save_model(directory: str) -> None:
    code = f"import sys; sys.path.insert(0, {str(ROOT / 'examples')!r}); import paddle_service; "
    code += f"paddle_service.save_model({directory!r})"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def _wait(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _get(url)
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


class Deployment:
    """One ``gunicorn -w 4`` deployment; ``root``: the otel_ml checkout it runs (another one's for an A/B)."""

    def __init__(self, name: str, tmp: str, model_dir: str, root: Path = ROOT) -> None:
        self.name, self.port, self.metrics_port = name, _free_port(), _free_port()
        self.otel_ml = name.startswith("otel_ml")
        env = {**os.environ, "PADDLE_SERVICE_MODEL_DIR": model_dir, "GLOG_minloglevel": "2", "TMPDIR": tmp}
        env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env.pop("OTEL_TRACES_EXPORTER", None)
        base = [sys.executable, str(BIN / "gunicorn"), "-w", "4", "-b", f"127.0.0.1:{self.port}"]
        if self.otel_ml:
            env["OTEL_EXPORTER_PROMETHEUS_PORT"] = str(self.metrics_port)
            command = [*base, "--chdir", str(root / "examples"), "paddle_service:wsgi_app()"]
        else:
            multiproc = tempfile.mkdtemp(dir=tmp, prefix="prometheus_multiproc_")
            env.update(PROMETHEUS_MULTIPROC_DIR=multiproc, PFE_METRICS_PORT=str(self.metrics_port))
            config = str(HERE / "_pfe_gunicorn.py")
            command = [*base, "-c", config, "--chdir", str(HERE), "_pfe_gunicorn:create()"]
        self.proc = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        self.sent = 0

    def ready(self) -> None:
        _wait(f"http://127.0.0.1:{self.port}/health")
        _wait(f"http://127.0.0.1:{self.metrics_port}/metrics")

    def predictions_counted(self) -> float:
        body = _get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        total = 0.0
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                if self.otel_ml:
                    if sample.name == "http_server_request_duration_seconds_count":
                        total += sample.value if sample.labels.get("http_route") == "/predict" else 0
                elif sample.name == "flask_http_request_total" and sample.labels.get("method") == "POST":
                    total += sample.value
        return total

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


def _scraper(deployments: list[Deployment], stop: threading.Event, latencies: dict[str, list[float]]) -> None:
    while not stop.wait(1.0):
        for deployment in deployments:
            started = time.perf_counter()
            try:
                _get(f"http://127.0.0.1:{deployment.metrics_port}/metrics")
                latencies[deployment.name].append((time.perf_counter() - started) * 1e3)
            except OSError:
                latencies[deployment.name].append(float("inf"))


def start_load(
    deployments: list[Deployment], connections: int, stop: threading.Event, scrapes: dict[str, list[float]]
) -> None:
    """Wait until every deployment answers, warm each up (untimed, counted), then scrape each every second."""
    for deployment in deployments:
        deployment.ready()
    for deployment in deployments:
        warm_up = connections * 25
        hey(deployment.port, warm_up, connections)
        deployment.sent += warm_up
    threading.Thread(target=_scraper, args=(deployments, stop, scrapes), daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    args.requests -= args.requests % args.connections  # hey sends n // c per connection
    tmp = tempfile.mkdtemp(prefix="bench_gunicorn_")
    model_dir = tempfile.mkdtemp(dir=tmp, prefix="model_")
    _save_model(model_dir)
    deployments = [Deployment(name, tmp, model_dir) for name in ("prometheus-flask-exporter", "otel_ml")]
    results: dict[str, dict[str, list[float]]] = {d.name: {"rps": [], "p50": [], "p99": []} for d in deployments}
    scrapes: dict[str, list[float]] = {d.name: [] for d in deployments}
    stop = threading.Event()
    try:
        start_load(deployments, args.connections, stop, scrapes)

        sequence: list[str] = []  # which deployment ran when: the order effect is reported

        def variant(deployment: Deployment) -> Any:
            def once() -> float:
                sequence.append(deployment.name)
                sample = hey(deployment.port, args.requests, args.connections)
                deployment.sent += args.requests
                for key, value in sample.items():
                    results[deployment.name][key].append(value)
                return sample["rps"]

            return once

        _common.interleave({d.name: variant(d) for d in deployments}, args.rounds)
        stop.set()
        time.sleep(3)  # a few publication intervals
        counted = {d.name: d.predictions_counted() for d in deployments}
    finally:
        stop.set()
        for deployment in deployments:
            deployment.stop()
    med = {name: {k: _common.median(v) for k, v in r.items()} for name, r in results.items()}
    pfe = med["prometheus-flask-exporter"]
    rows = [
        "| deployment (`gunicorn -w 4`, sync) | requests/s | p50 ms | p99 ms | throughput vs pfe | p50 vs pfe "
        "| p99 vs pfe | requests sent | counted on its /metrics | scrape ms (median, max) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for d in deployments:
        m = med[d.name]
        finite = [s for s in scrapes[d.name] if s != float("inf")]
        failed = len(scrapes[d.name]) - len(finite)
        scrape = f"{_common.median(finite):.1f}, {max(finite):.1f}" if finite else "none"
        scrape += f" ({failed} failed)" if failed else ""
        rows.append(
            f"| {d.name} | {m['rps']:.0f} | {m['p50']:.2f} | {m['p99']:.2f} | {m['rps'] / pfe['rps']:.3f} | "
            f"{m['p50'] / pfe['p50']:.3f} | {m['p99'] / pfe['p99']:.3f} | {d.sent} | {counted[d.name]:.0f} | {scrape} |"
        )
    ratios = [
        o / p for o, p in zip(results["otel_ml"]["rps"], results["prometheus-flask-exporter"]["rps"], strict=True)
    ]
    per_round = [f"{r:.3f}" for r in ratios]
    first = [sequence[2 * i] == "otel_ml" for i in range(len(ratios))]
    when_first = [r for r, f in zip(ratios, first, strict=True) if f]
    when_second = [r for r, f in zip(ratios, first, strict=True) if not f]
    paired = (
        f"Paired per round (both deployments under the same conditions, which the ratio of the medians above is not): "
        f"median of the per-round ratios **{_common.median(ratios):.3f}**, geometric mean "
        f"{statistics.geometric_mean(ratios):.3f}; otel_ml loaded first in {len(when_first)} rounds "
        f"(median ratio {_common.median(when_first) if when_first else float('nan'):.3f}), second in "
        f"{len(when_second)} (median {_common.median(when_second) if when_second else float('nan'):.3f}).\n"
    )
    body = (
        f"`hey -n {args.requests} -c {args.connections}` POST /predict (4 rows), {args.rounds} interleaved rounds, "
        "medians; both deployments run side by side on the same cores as `hey`, one idle while the other is "
        "loaded; a scraper reads both endpoints every second throughout.\n\n"
        + "\n".join(rows)
        + f"\n\notel_ml / prometheus-flask-exporter throughput per round: {', '.join(per_round)}\n\n"
        + paired
    )
    command = "python bench/bench_gunicorn.py " + " ".join(sys.argv[1:])
    if args.out:  # a trial run: the committed results file is left alone
        Path(args.out).write_text(f"command: `{command}`\n\n" + body)
        print(Path(args.out).read_text())
        return
    path = _common.write(
        "gunicorn",
        "The example service under gunicorn -w 4: otel_ml vs prometheus-flask-exporter (multiprocess)",
        command,
        body,
    )
    print(path.read_text())


if __name__ == "__main__":
    main()
