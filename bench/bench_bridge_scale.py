"""The bridge at scale: 10,000 runs under a 1,024-descriptor limit, a first pass and a follow-up poll.

    PYTHONPATH=. .venv/bin/python bench/bench_bridge_scale.py [--runs 10000] [--values 10]

Event files are built with TensorBoard's pure-Python record framing (no
TensorFlow in this process, as in a bridge deployment). Reported: values/s
and CPU of the first ``--once``-style pass, and the wall time of a second
poll that finds nothing new (the cost of following 10,000 idle runs).
"""

from __future__ import annotations

import argparse
import os
import resource
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

from otel_ml.distro.tensorboard_bridge._bridge import Bridge

DESCRIPTORS = 1024


def _frame(data: bytes) -> bytes:
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


def _file_bytes(values: int) -> bytes:
    records = []
    for step in range(values):
        value = summary_pb2.Summary.Value(tag="loss", simple_value=1.0 / (step + 1))
        event = event_pb2.Event(step=step, summary=summary_pb2.Summary(value=[value]))
        records.append(_frame(event.SerializeToString()))
    return b"".join(records)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--values", type=int, default=10)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(DESCRIPTORS, hard), hard))
    content = _file_bytes(args.values)
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp) / "logs"
        for run in range(args.runs):
            (logs / f"run{run:05d}").mkdir(parents=True)
            (logs / f"run{run:05d}" / "events.out.tfevents.1.host").write_bytes(content)
        bridge = Bridge([str(logs)], os.path.join(tmp, "state"), MeterProvider(metric_readers=[InMemoryMetricReader()]))
        cpu, start = time.process_time(), time.perf_counter()
        exported = bridge.poll(final=True)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        start = time.perf_counter()
        again = bridge.poll()
        idle = time.perf_counter() - start
    body = "\n".join(
        [
            "| runs | values | descriptor limit | first pass (s) | CPU (s) | values/s | idle poll (s) |",
            "|---|---|---|---|---|---|---|",
            f"| {args.runs} | {exported} | {DESCRIPTORS} | {wall:.1f} | {cpu:.1f} | {exported / wall:.0f} | "
            f"{idle:.2f} (exported {again}) |",
            "",
            "The first pass reads every file (header and payload CRCs checked in pure Python) and saves the state;",
            "the idle poll walks the tree and stats every file, opening none.",
            "",
        ]
    )
    command = f"PYTHONPATH=. .venv/bin/python bench/bench_bridge_scale.py --runs {args.runs} --values {args.values}"
    path = _common.write("bridge_scale", "TensorBoard bridge at scale", command, body)
    print(path.read_text())


if __name__ == "__main__":
    main()
