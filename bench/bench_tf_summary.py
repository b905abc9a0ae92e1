"""tf.summary with and without otel_ml: the guide's training step, per-call costs, the follower's CPU, the bridge.

    PYTHONPATH=. .venv/bin/python bench/bench_tf_summary.py [--rounds 7] [--steps 300] [--calls 1000]

Variants run interleaved (shuffled order each round) and medians of the
per-round means are reported, with ratios against the plain baseline of the
same run. "files" is the default path (a background thread reads the event
files back); "per_write" is the opt-in ``summary_per_write=True`` path.

- guide step: the pattern the TensorBoard guides teach, a ``tf.function``
  GradientTape step on a 64->256->10 MLP, batch 64, writing ``loss`` and
  ``accuracy`` with ``tf.summary.scalar`` every step;
- eager / graph: one ``tf.summary.scalar`` per call, eagerly or in a ``tf.function``;
- follower CPU: CPU of the follower thread (from /proc) during the guide step,
  and of reading + exporting 10,000 values offline, per 1,000 values;
- bridge: one ``--once`` pass over 100 runs x 300 values (copies of one TensorFlow-written file).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tensorflow as tf
from _common import interleave, median, write
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_ml._summary import FileFollower, SummaryExporter, SummaryInstruments, export_events
from otel_ml.distro.tensorboard_bridge._bridge import Bridge
from otel_ml.tf_summary import TfSummaryInstrumentor

# mode -> (summary_per_write, summary_flush_seconds); None: not instrumented
MODES: dict[str, tuple[bool, float] | None] = {
    "plain": None,
    "files": (False, 10.0),  # the default
    "files_0.2s": (False, 0.2),  # the follower reads and flushes 5x a second: a stress setting
    "per_write": (True, 10.0),
}
FILE_MODES = ("plain", "files", "files_0.2s")
_follower_cpu = {"seconds": 0.0, "values": 0}
_cpu: dict[tuple[str, str], list[float]] = {}  # (section, mode) -> process CPU per step or call
_current: list[tuple[str, str]] = [("", "")]


def _measure(run: Callable[[], None], count: int) -> float:
    """Wall seconds per item of ``run`` (``count`` items); the process CPU per item is kept in ``_cpu``."""
    cpu, start = time.process_time(), time.perf_counter()
    run()
    wall = time.perf_counter() - start
    _cpu.setdefault(_current[0], []).append((time.process_time() - cpu) / count)
    return wall / count


def _thread_cpu(name: str) -> float:
    """CPU seconds (user + system) of the live thread called ``name``, from /proc/self/task."""
    for thread in threading.enumerate():
        if thread.name == name and thread.native_id is not None:
            with open(f"/proc/self/task/{thread.native_id}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def _guide_model() -> Callable[[tf.Tensor], None]:
    """The guide's step as a Python function; each sample wraps it in a fresh tf.function.

    A tf.function binds the default writer when it is traced, so one traced for
    another writer (or before instrumenting) cannot be reused.
    """
    model = tf.keras.Sequential(
        [tf.keras.Input((64,)), tf.keras.layers.Dense(256, activation="relu"), tf.keras.layers.Dense(10)]
    )
    optimizer = tf.keras.optimizers.SGD(0.01)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x = tf.random.stateless_normal((64, 64), seed=(1, 2))
    y = tf.random.stateless_uniform((64,), seed=(3, 4), maxval=10, dtype=tf.int32)

    def train_step(step: tf.Tensor) -> None:
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = loss_fn(y, logits)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1, output_type=tf.int32), y), tf.float32))
        tf.summary.scalar("loss", loss, step=step)
        tf.summary.scalar("accuracy", accuracy, step=step)

    return train_step


def _timed(tmp: str, title: str, mode: str, body: Callable[[tf.summary.SummaryWriter], float]) -> Callable[[], float]:
    """One sample: (un)instrumented as ``mode`` says, a fresh writer, ``body`` timed inside."""
    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    counter = iter(range(10**9))

    def sample() -> float:
        _current[0] = (title, mode)
        settings = MODES[mode]
        if settings is not None:
            TfSummaryInstrumentor().instrument(
                meter_provider=provider, summary_per_write=settings[0], summary_flush_seconds=settings[1]
            )
        writer = tf.summary.create_file_writer(os.path.join(tmp, f"{mode}-{next(counter)}"))
        try:
            return body(writer)
        finally:
            if mode == "files_0.2s" and title.startswith("Guide"):
                _follower_cpu["seconds"] += _thread_cpu("otel_ml-tf_summary-follower")
            writer.close()
            if settings is not None:
                TfSummaryInstrumentor().uninstrument()

    return sample


def _guide_body(steps: int) -> Callable[[tf.summary.SummaryWriter], float]:
    python_step = _guide_model()
    step_tensors = [tf.constant(i, tf.int64) for i in range(steps)]

    def body(writer: tf.summary.SummaryWriter) -> float:
        train_step = tf.function(python_step)

        def loop() -> None:
            for step in step_tensors:
                train_step(step)

        with writer.as_default():
            train_step(step_tensors[0])  # trace (once per sample) outside the timing
            elapsed = _measure(loop, steps)
        _follower_cpu["values"] += 2 * steps
        return elapsed

    return body


def _eager_body(calls: int) -> Callable[[tf.summary.SummaryWriter], float]:
    def body(writer: tf.summary.SummaryWriter) -> float:
        def loop() -> None:
            for step in range(calls):
                tf.summary.scalar("loss", 0.5, step=step)

        with writer.as_default():
            return _measure(loop, calls)

    return body


def _graph_body(calls: int) -> Callable[[tf.summary.SummaryWriter], float]:
    def python_fn(step: tf.Tensor) -> None:
        tf.summary.scalar("loss", tf.cast(step, tf.float32), step=step)

    steps = [tf.constant(i, tf.int64) for i in range(calls)]

    def body(writer: tf.summary.SummaryWriter) -> float:
        step_fn = tf.function(python_fn)

        def loop() -> None:
            for step in steps:
                step_fn(step)

        with writer.as_default():
            step_fn(steps[0])
            return _measure(loop, calls)

    return body


def _write_file(logdir: str, values: int) -> str:
    """One event file of ``values`` scalars written by TensorFlow (a loop inside one tf.function)."""

    @tf.function
    def write_all() -> None:
        for step in tf.range(values // 2, dtype=tf.int64):
            tf.summary.scalar("loss", 1.0 / (tf.cast(step, tf.float32) + 1.0), step=step)
            tf.summary.scalar("accuracy", tf.cast(step, tf.float32) / values, step=step)

    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default():
        write_all()
    writer.close()
    return os.path.join(logdir, os.listdir(logdir)[0])


def _offline_read(path: str, verify: bool) -> float:
    """CPU seconds per 1,000 values to read and export a finished event file (the follower's work)."""
    exporter = SummaryExporter(SummaryInstruments.create(MeterProvider().get_meter("bench")), 100, "bench")
    start = time.process_time()
    follower = FileFollower(path, verify=verify)
    exported = export_events(exporter, follower, "run", follower.read())
    return (time.process_time() - start) / exported * 1000


def _bridge(tmp: str, runs: int = 100, per_run: int = 300) -> dict[str, float]:
    """One --once pass over ``runs`` copies of a TensorFlow-written file of ``per_run`` values."""
    source = _write_file(os.path.join(tmp, "source"), per_run)
    logdir = os.path.join(tmp, "logdir")
    for run in range(runs):
        os.makedirs(os.path.join(logdir, f"run_{run:03d}"))
        shutil.copy(source, os.path.join(logdir, f"run_{run:03d}", os.path.basename(source)))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu_before, start = time.process_time(), time.perf_counter()
    bridge = Bridge([logdir], os.path.join(tmp, "state"), MeterProvider(metric_readers=[InMemoryMetricReader()]))
    events = bridge.poll(final=True)
    wall = time.perf_counter() - start
    return {
        "events": events,
        "wall_s": wall,
        "cpu_s": time.process_time() - cpu_before,
        "rss_growth_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024,
    }


def _table(title: str, unit: str, samples: dict[str, list[float]], cpu: dict[str, list[float]]) -> list[str]:
    """Wall medians and ratios (of medians, and median of per-round ratios), and the same for process CPU."""
    lines = [
        f"## {title}",
        "",
        f"| variant | wall {unit} | ratio of medians | median of per-round ratios | process CPU {unit} | CPU ratio |",
        "|---|---|---|---|---|---|",
    ]
    for mode, values in samples.items():
        paired = median([value / plain for value, plain in zip(values, samples["plain"], strict=True)])
        ratio = median(values) / median(samples["plain"])
        cpu_ratio = median(cpu[mode]) / median(cpu["plain"])
        lines.append(
            f"| {mode} | {median(values) * 1e6:.1f} | {ratio:.3f}x | {paired:.3f}x | {median(cpu[mode]) * 1e6:.1f} "
            f"| {cpu_ratio:.3f}x |"
        )
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        sections = {
            "Guide training step (tf.function, 2 scalars per step)": ("us/step", _guide_body(args.steps), MODES),
            "Eager tf.summary.scalar": ("us/call", _eager_body(args.calls), FILE_MODES),
            "tf.summary.scalar inside tf.function (one per call)": ("us/call", _graph_body(args.calls), FILE_MODES),
        }
        tasks = {
            f"{title}|{mode}": _timed(tmp, title, mode, body)
            for title, (_, body, modes) in sections.items()
            for mode in modes
        }
        samples = interleave(tasks, args.rounds)  # every variant of every section, shuffled, each round
        tables = []
        for title, (unit, _, modes) in sections.items():
            walls = {mode: samples[f"{title}|{mode}"] for mode in modes}
            tables.append(_table(title, unit, walls, {mode: _cpu[(title, mode)] for mode in modes}))
        thread_cpu = _follower_cpu["seconds"] / max(_follower_cpu["values"], 1) * 1000
        offline_path = _write_file(os.path.join(tmp, "offline"), 10_000)
        offline = {verify: median([_offline_read(offline_path, verify) for _ in range(5)]) for verify in (False, True)}
        bridge = _bridge(tmp)
    lines = [
        f"Load average (1 min) on this shared machine: {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at "
        "the end; on 2 cores, run-to-run differences of 10-20 % between identical variants are common here, so "
        "the process CPU columns and the follower's own CPU below are the steadier measures.",
        "",
    ]
    lines += [line for table in tables for line in table]
    lines += [
        "## Follower CPU per 1,000 values",
        "",
        f"- follower thread during the guide step, `files_0.2s` (from /proc, 10 ms ticks): {thread_cpu * 1000:.1f} ms",
        "- reading + exporting a finished file of 10,000 values, process CPU, median of 5: "
        f"{offline[False] * 1000:.1f} ms as the in-process follower reads (record headers checked), "
        f"{offline[True] * 1000:.1f} ms as the bridge reads (payload CRCs checked too)",
        "",
        "## Bridge (`--once` over 100 runs x 300 values)",
        "",
        "| values exported | wall (s) | CPU (s) | values/s | RSS growth (MiB) |",
        "|---|---|---|---|---|",
        f"| {bridge['events']:.0f} | {bridge['wall_s']:.2f} | {bridge['cpu_s']:.2f} | "
        f"{bridge['events'] / bridge['wall_s']:.0f} | {bridge['rss_growth_mib']:.1f} |",
        "",
        f"TensorFlow {tf.__version__}; {args.rounds} interleaved rounds (shuffled order); guide step: {args.steps} "
        f"steps per round, eager/graph: {args.calls} calls per round (about a second per sample, so that the "
        "follower reads during it). `files`: the default path (writers flushed every 10 s, files read every "
        "second); `files_0.2s`: summary_flush_seconds=0.2 (flush and read five times a second); `per_write`: "
        "the opt-in summary_per_write=True path (a tf.py_function per write inside tf.function).",
    ]
    command = (
        f"PYTHONPATH=. .venv/bin/python bench/bench_tf_summary.py --rounds {args.rounds} --steps {args.steps} "
        f"--calls {args.calls}"
    )
    path = write("tf_summary", "tf.summary instrumentation and TensorBoard bridge benchmark", command, "\n".join(lines))
    print(path.read_text())


if __name__ == "__main__":
    main()
