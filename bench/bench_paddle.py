"""Overhead of otel_ml on Paddle ``Predictor.run()``, on a real model, and on the Flask example service.

Part 1, per call: the same predictor's zero-copy ``run()`` timed plain
(uninstrumented), under otel_ml with no active span (metrics only), inside a
sampled request span whose traces are exported (a ``paddle.predictor.run``
child per call), inside a span that is not sampled (otel_ml's default with no
trace exporter: no child), and under otel_ml with a no-op meter (otel_ml's own
code without the SDK), interleaved in shuffled order each round; medians of
per-round means. The SDK's own cost of one ``Histogram.record`` is measured
beside it: a floor no instrumentation built on the OpenTelemetry SDK goes under.

Part 3, a real model: MobileNetV2 at batch 1 (``bench/_paddle_mobilenet.py``).

Part 2, the service three ways under ``hey`` (``bench/_paddle_service.py``):
no instrumentation, the seeds' prometheus-flask-exporter design, otel_ml.

    python bench/bench_paddle.py [--rounds 15] [--calls 2000] [--service-rounds 5] [--parts 1,2,3]

Needs the ``bench`` extra (prometheus-flask-exporter) and ``hey`` (apt-get install hey).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("GLOG_minloglevel", "2")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import _common  # noqa: E402
import numpy as np  # noqa: E402
import paddle  # noqa: E402
import paddle.inference as pi  # noqa: E402
from _paddle_mobilenet import bench_mobilenet  # noqa: E402
from _paddle_service import bench_service  # noqa: E402
from opentelemetry import context as otel_context  # noqa: E402
from opentelemetry import metrics  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult  # noqa: E402

from otel_ml.distro._sampling import SlowSpansOnly  # noqa: E402
from otel_ml.distro.endpoint import OtelMLPrometheusMetricReader, SlowStepBuffer  # noqa: E402
from otel_ml.paddle import PaddleInstrumentor  # noqa: E402

EXAMPLE = ROOT / "examples" / "paddle_service.py"


def save_mlp(directory: str, name: str, widths: list[int]) -> str:
    layers: list[Any] = []
    for a, b in itertools.pairwise(widths):
        layers += [paddle.nn.Linear(a, b), paddle.nn.ReLU()]
    net = paddle.nn.Sequential(*layers[:-1])
    prefix = os.path.join(directory, name)
    paddle.jit.save(net, prefix, input_spec=[paddle.static.InputSpec([None, widths[0]], "float32", "x")])
    return prefix


def make_predictor(prefix: str, batch: int, features: int) -> Any:
    config = pi.Config(prefix + ".json", prefix + ".pdiparams")
    config.disable_glog_info()
    predictor = pi.create_predictor(config)
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.reshape([batch, features])
    handle.copy_from_cpu(np.random.default_rng(0).normal(size=(batch, features)).astype("float32"))
    return predictor


class _Discard(SpanExporter):
    """A trace exporter that drops what it gets: the spans are made, queued and handed over as with OTLP."""

    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


SAMPLED = "otel_ml in a sampled span (traces exported)"
UNSAMPLED = "otel_ml in a span, no trace exporter (otel_ml's default sampler)"


def bench_predictor(args: argparse.Namespace, tmp: str) -> tuple[str, dict[str, float]]:
    meter_provider = MeterProvider(metric_readers=[OtelMLPrometheusMetricReader(start_server=False)])
    exported = TracerProvider()
    exported.add_span_processor(BatchSpanProcessor(_Discard()))
    exported.add_span_processor(SlowStepBuffer())
    unexported = TracerProvider(sampler=SlowSpansOnly())  # what otel_ml builds with no trace exporter
    unexported.add_span_processor(SlowStepBuffer())
    tracers = {SAMPLED: (exported, exported.get_tracer("bench")), UNSAMPLED: (unexported, unexported.get_tracer("b"))}
    inst = PaddleInstrumentor()
    models = {
        "tiny (4-16-3, batch 4)": (save_mlp(tmp, "tiny", [4, 16, 3]), 4, 4),
        "small (64-256-256-10, batch 8)": (save_mlp(tmp, "small", [64, 256, 256, 10]), 8, 64),
    }
    calls = args.calls

    def timed(predictor: Any) -> float:
        run = predictor.run
        t0 = time.perf_counter_ns()
        for _ in range(calls):
            run()
        return (time.perf_counter_ns() - t0) / calls / 1e3

    def variant(prefix: str, batch: int, features: int, mode: str) -> Any:
        def once() -> float:
            if inst.is_instrumented_by_opentelemetry:
                inst.uninstrument()
            tracer_provider, tracer = tracers.get(mode, tracers[SAMPLED])
            if mode == "otel_ml, no-op meter":
                inst.instrument(meter_provider=metrics.NoOpMeterProvider(), tracer_provider=tracer_provider)
            elif mode != "plain":
                inst.instrument(meter_provider=meter_provider, tracer_provider=tracer_provider)
            predictor = make_predictor(prefix, batch, features)
            for _ in range(50):
                predictor.run()  # warm-up, untimed
            if mode in tracers:
                with tracer.start_as_current_span("request"):
                    return timed(predictor)
            return timed(predictor)

        return once

    histogram = meter_provider.get_meter("floor").create_histogram("floor", unit="s")
    attrs = {"ml.framework": "paddle", "ml.model.name": "tiny", "ml.inference.warmup": False}
    empty = otel_context.Context()

    def sdk_floor() -> float:
        record = histogram.record
        t0 = time.perf_counter_ns()
        for _ in range(calls):
            record(0.0001, attrs, context=empty)
        return (time.perf_counter_ns() - t0) / calls / 1e3

    rows = ["| model | variant | median µs/call | added µs/call | ratio to plain |", "|---|---|---:|---:|---:|"]
    summary: dict[str, float] = {}
    for label, (prefix, batch, features) in models.items():
        modes = ("plain", "otel_ml", SAMPLED, UNSAMPLED, "otel_ml, no-op meter")
        samples = _common.interleave({m: variant(prefix, batch, features, m) for m in modes}, args.rounds)
        plain = _common.median(samples["plain"])
        for mode in modes:
            value = _common.median(samples[mode])
            rows.append(f"| {label} | {mode} | {value:.1f} | {value - plain:+.1f} | {value / plain:.3f} |")
            summary[f"{label}|{mode}"] = value
    if inst.is_instrumented_by_opentelemetry:
        inst.uninstrument()
    floor = _common.median([sdk_floor() for _ in range(args.rounds)])
    summary["sdk_floor"] = floor
    rows.append(f"| — | one SDK `Histogram.record` (reference) | {floor:.1f} | | |")
    return "\n".join(rows), summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=2000, help="timed run() calls per sample")
    parser.add_argument("--service-rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=4, help="hey -c")
    parser.add_argument("--requests", type=int, default=2000, help="hey -n, per service sample")
    parser.add_argument("--mobilenet-rounds", type=int, default=7)
    parser.add_argument("--mobilenet-runs", type=int, default=30, help="timed MobileNetV2 runs per sample")
    parser.add_argument("--parts", default="1,2,3", help="which parts to run (1 run(), 2 service, 3 MobileNetV2)")
    parser.add_argument("--out", default=None, help="write bench/results/paddle.md")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    body = ""
    with tempfile.TemporaryDirectory() as tmp:
        if "1" in parts:
            body += _part1(args, tmp)
        if "3" in parts:
            table, _ = bench_mobilenet(args.mobilenet_rounds, args.mobilenet_runs, tmp)
            body += "## A real model: MobileNetV2, batch 1 (random weights, built locally)\n\n" + table + "\n\n"
        if "2" in parts:
            table, _ = bench_service(args.service_rounds, args.requests, args.connections, tmp)
            body += (
                f"## The example service three ways (`hey -n {args.requests} -c {args.connections}`, "
                f"{args.service_rounds} interleaved rounds, medians)\n\n" + table + "\n"
            )
    print(body)
    if args.out:
        command = "python bench/bench_paddle.py " + " ".join(sys.argv[1:])
        _common.write("paddle", "Paddle inference overhead", command.strip(), body)


def _part1(args: argparse.Namespace, tmp: str) -> str:
    table, p = bench_predictor(args, tmp)
    tiny, small = "tiny (4-16-3, batch 4)", "small (64-256-256-10, batch 8)"
    lines = [
        f"Zero-copy `run()`, {args.calls} calls per sample, {args.rounds} interleaved rounds, medians. "
        "otel_ml: metrics to the embedded reader, slow-run spans to the slow-step buffer, adaptive threshold.\n",
        "## Predictor run()\n",
        table + "\n",
    ]
    for label in (tiny, small):
        plain = p[f"{label}|plain"]
        added = {m: p[f"{label}|{m}"] - plain for m in ("otel_ml", SAMPLED, UNSAMPLED, "otel_ml, no-op meter")}
        lines.append(
            f"- {label}: +{added['otel_ml']:.1f} µs with no span (target ≤ 10), +{added[UNSAMPLED]:.1f} µs in a "
            f"request span under otel_ml's default sampler (target ≤ 25), +{added[SAMPLED]:.1f} µs in a sampled "
            f"one (traces exported); otel_ml's own code with a no-op meter +{added['otel_ml, no-op meter']:.1f} µs"
        )
    lines.append(f"- one SDK `Histogram.record` costs {p['sdk_floor']:.1f} µs here (the floor per measurement)\n")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
