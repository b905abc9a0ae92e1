"""Time to visibility: from a ``tf.summary`` write to the value on the embedded ``/metrics``.

The TensorBoard guide's pattern: one loop-wide ``with writer.as_default():``,
the writer left open, one ``loss`` per "epoch" every ``--period`` seconds (a
per-epoch write: too few writes to fill TensorFlow's queue of 10). The program
is instrumented by ``otel_ml.instrument()`` with the defaults, or with
``--flush`` as ``OTEL_ML_TF_SUMMARY_FLUSH_SECONDS``; the parent polls
``/metrics`` every 50 ms and records, for each write, the seconds until
``ml_tensorboard_scalar`` shows its value.

    PYTHONPATH=. .venv/bin/python bench/bench_visibility.py --writes 8 --period 3 [--flush 10]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHILD = """
import sys, time
import otel_ml
otel_ml.instrument()
import tensorflow as tf
writer = tf.summary.create_file_writer(sys.argv[1])
writes, period = int(sys.argv[2]), float(sys.argv[3])
with writer.as_default():
    for epoch in range(writes):
        print(f"WROTE {epoch} {time.time():.3f}", flush=True)
        tf.summary.scalar("loss", float(epoch + 1), step=epoch)
        time.sleep(period)
time.sleep(60)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writes", type=int, default=8)
    parser.add_argument("--period", type=float, default=3.0)
    parser.add_argument("--flush", type=float, default=None, help="OTEL_ML_TF_SUMMARY_FLUSH_SECONDS (default: unset)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = 19000 + os.getpid() % 1000
        env = {**os.environ, "OTEL_EXPORTER_PROMETHEUS_PORT": str(port), "TF_CPP_MIN_LOG_LEVEL": "2"}
        if args.flush is not None:
            env["OTEL_ML_TF_SUMMARY_FLUSH_SECONDS"] = str(args.flush)
        log = Path(tmp) / "child.log"
        with open(log, "w") as out:
            child = subprocess.Popen(
                [sys.executable, "-c", CHILD, f"{tmp}/logs/run", str(args.writes), str(args.period)],
                stdout=out,
                stderr=subprocess.DEVNULL,
                env=env,
            )
        delays: dict[int, float] = {}
        try:
            deadline = time.monotonic() + 120 + args.writes * args.period
            while len(delays) < args.writes and time.monotonic() < deadline:
                try:
                    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
                except OSError:
                    time.sleep(0.05)
                    continue
                seen = time.time()
                found = re.search(r'^ml_tensorboard_scalar\{[^}]*ml_summary_tag="loss"[^}]*\} (\S+)$', body, re.M)
                wrote = dict(re.findall(r"^WROTE (\d+) ([\d.]+)$", log.read_text(), re.M))
                if found:
                    value = int(float(found.group(1))) - 1  # the epoch whose write is visible
                    for epoch in range(value + 1):
                        if epoch not in delays and str(epoch) in wrote:
                            delays[epoch] = seen - float(wrote[str(epoch)])
                time.sleep(0.05)
        finally:
            child.terminate()
            child.wait(10)
    values = [delays[e] for e in sorted(delays)]
    print(f"writes {args.writes}, period {args.period} s, OTEL_ML_TF_SUMMARY_FLUSH_SECONDS={args.flush or 'default'}")
    print("delays (s): " + ", ".join(f"{v:.1f}" for v in values))
    if values:
        print(f"median {statistics.median(values):.1f} s, max {max(values):.1f} s, seen {len(values)}/{args.writes}")


if __name__ == "__main__":
    main()
