"""Scrapes must not slow training: a Keras ``fit`` with 8 clients scraping its endpoint in a loop, against none.

The program is one process (otel_ml instrumented, the embedded endpoint on a
free port) that runs the same ``fit`` on command; this script times each fit
in one of three conditions, interleaved in a shuffled order every round:

- ``none``: no scraper;
- ``elsewhere``: 8 threads of this script scraping a second, idle otel_ml
  endpoint process in a loop (the same load on the machine, aimed elsewhere);
- ``at it``: the same 8 threads scraping the training program's own endpoint.

Usage::

    python bench/bench_scrapes.py --rounds 7
"""

from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import interleave, median, write
from tests._net import free_port

ROOT = Path(__file__).resolve().parent.parent
LEAD = 3.0
PROGRAM = """
import sys, time
import numpy as np
import otel_ml
otel_ml.instrument()
import keras

x = np.random.default_rng(0).normal(size=(4096, 32)).astype("float32")
y = x.sum(axis=1, keepdims=True)
model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1)])
model.compile(optimizer="adam", loss="mse")
model.fit(x, y, batch_size=32, epochs=1, verbose=0)  # warm-up: tracing, the first scrape's families
print("ready", flush=True)
for line in sys.stdin:
    started, cpu = time.perf_counter(), time.process_time()
    model.fit(x, y, batch_size=32, epochs=int(line), verbose=0)
    print(time.perf_counter() - started, time.process_time() - cpu, flush=True)
"""
IDLE = """
import sys
import otel_ml
otel_ml.instrument()
print("ready", flush=True)
sys.stdin.readline()
"""


def start(code: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "CUDA_VISIBLE_DEVICES": "",
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
        "OTEL_METRICS_EXPORTER": "otel_ml_prometheus",
        "OTEL_TRACES_EXPORTER": "none",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc, port


class Scrapers:
    """``count`` threads, each scraping ``port`` in a loop (a new connection per scrape, as Prometheus does)."""

    def __init__(self, port: int, count: int) -> None:
        self.port, self.count = port, count
        self.answers = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Scrapers:
        for _ in range(self.count):
            thread = threading.Thread(target=self._loop, daemon=True)
            thread.start()
            self._threads.append(thread)
        time.sleep(LEAD)  # past the endpoint's burst allowance: the steady state of scrapers in a loop
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                connection.request("GET", "/metrics")
                connection.getresponse().read()
                connection.close()
                self.answers += 1
            except OSError:
                time.sleep(0.01)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--scrapers", type=int, default=8)
    args = parser.parse_args()
    program, port = start(PROGRAM)
    idle, idle_port = start(IDLE)
    rates: dict[str, list[float]] = {"elsewhere": [], "at it": []}
    cpus: dict[str, list[float]] = {"none": [], "elsewhere": [], "at it": []}
    assert program.stdin is not None and program.stdout is not None

    def fit(name: str = "none") -> float:
        assert program.stdin is not None and program.stdout is not None
        program.stdin.write(f"{args.epochs}\n")
        program.stdin.flush()
        wall, cpu = map(float, program.stdout.readline().split())
        cpus[name].append(cpu)
        return wall

    def scraped(target: int, name: str) -> float:
        with Scrapers(target, args.scrapers) as scrapers:
            started = time.perf_counter()
            answered = scrapers.answers
            took = fit(name)
            rates[name].append((scrapers.answers - answered) / (time.perf_counter() - started))
        return took

    try:
        variants = {
            "none": fit,
            "elsewhere": lambda: scraped(idle_port, "elsewhere"),
            "at it": lambda: scraped(port, "at it"),
        }
        samples = interleave(variants, args.rounds)
    finally:
        for proc in (program, idle):
            proc.kill()
            proc.wait()
    none, elsewhere, at_it = (median(samples[name]) for name in ("none", "elsewhere", "at it"))
    rows = "\n".join(
        f"| {name} | {median(values):.3f} s | {median(values) / none:.3f}x | {median(cpus[name]):.3f} s | "
        f"{median(cpus[name]) / median(cpus['none']):.3f}x | "
        + (f"{median(rates[name]):.0f}" if name in rates else "-")
        + " | "
        + ", ".join(f"{v:.2f}" for v in values)
        + " |"
        for name, values in samples.items()
    )
    body = (
        f"A Keras `fit` ({args.epochs} epochs x 128 steps, 32->64->1 MLP, CPU), otel_ml instrumented with the "
        f"embedded endpoint, {args.rounds} interleaved rounds; {args.scrapers} threads scraping `/metrics` in a loop "
        f"(a new connection per scrape), started {LEAD:.0f} s before each fit.\n\n"
        "| scrapers | median fit (wall) | vs none | program CPU (all threads) | vs none | scrapes answered/s "
        "| wall samples (s) |\n|---|---|---|---|---|---|---|\n"
        f"{rows}\n\n"
        f"Scraping the program itself against none: **{at_it / none:.3f}x** wall (target <= 1.10x), "
        f"{median(cpus['at it']) / median(cpus['none']):.3f}x the program's CPU (its endpoint threads included); "
        f"against the same load aimed at another process: {at_it / elsewhere:.3f}x wall.\n"
    )
    path = write(
        "scrapes",
        "Fit time with 8 looping scrapers",
        f"python bench/bench_scrapes.py --rounds {args.rounds} --epochs {args.epochs} --scrapers {args.scrapers}",
        body,
    )
    print(path.read_text())


if __name__ == "__main__":
    main()
