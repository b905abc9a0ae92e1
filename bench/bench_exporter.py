"""Time to render one scrape of the embedded endpoint, against upstream's Prometheus reader.

Registry: the training metrics of 4 runs (step-time histograms with exemplars,
counters, loss/metric/learning-rate gauges) plus GPU-style gauges for 8
devices, fed identically to two MeterProviders: one with otel_ml's reader, one
with ``opentelemetry-exporter-prometheus``'s. Each sample is one full scrape
(SDK collection + translation + exposition), interleaved.

    python bench/bench_exporter.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
from opentelemetry import trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from otel_ml._training.instruments import TrainingInstruments as KerasInstruments
from otel_ml.distro.endpoint import OtelMLPrometheusMetricReader
from otel_ml.distro.endpoint._reader import WORKER_RESOURCE_ATTRIBUTES

GPUS = 8
RUNS = 4


def feed(provider: MeterProvider, tracer: trace.Tracer, seed: int) -> None:
    rng = random.Random(seed)
    meter = provider.get_meter("otel_ml.keras")
    m = KerasInstruments.create(meter)
    for run in range(RUNS):
        attrs = {"ml.framework": "keras", "ml.model.name": "resnet", "ml.run.name": f"run-{run}"}
        for step in range(500):
            if step % 100 == 0:
                with tracer.start_as_current_span("keras.train_step"):
                    m.step_duration.record(0.5 + rng.random(), attrs)
            else:
                m.step_duration.record(
                    rng.uniform(0.001, 0.05), attrs, context=trace.set_span_in_context(trace.INVALID_SPAN)
                )
        m.steps.add(500, attrs)
        m.samples.add(500 * 32, attrs)
        m.epochs.add(5, attrs)
        m.epoch_duration.record(12.0, attrs)
        m.loss.set(0.3, {**attrs, "ml.phase": "train"})
        m.loss.set(0.35, {**attrs, "ml.phase": "validation"})
        for name in ("accuracy", "mae", "precision"):
            m.metric.set(0.9, {**attrs, "ml.metric.name": name, "ml.phase": "validation"})
        m.learning_rate.set(1e-3, attrs)
    gpu = provider.get_meter("otel_ml.gpu")
    devices = [
        {"hw.id": f"GPU-{i:08x}", "hw.name": "NVIDIA H100", "hw.vendor": "nvidia", "gpu.index": i} for i in range(GPUS)
    ]

    def gauge(value: float):  # type: ignore[no-untyped-def]
        def callback(options: CallbackOptions):  # type: ignore[no-untyped-def]
            return [Observation(value + i, d) for i, d in enumerate(devices)]

        return callback

    for name, unit in (
        ("hw.gpu.utilization", "1"),
        ("hw.gpu.memory.utilization", "1"),
        ("hw.power", "W"),
        ("hw.temperature", "Cel"),
    ):
        gpu.create_observable_gauge(name, [gauge(0.5)], unit=unit)
    for name in ("hw.gpu.memory.usage", "hw.gpu.memory.limit"):
        gpu.create_observable_up_down_counter(name, [gauge(8e10)], unit="By")
    gpu.create_observable_counter("hw.energy", [gauge(1e6)], unit="J")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    tracer = TracerProvider().get_tracer("bench")

    ours = OtelMLPrometheusMetricReader(start_server=False)
    upstream_registry = CollectorRegistry(auto_describe=False)
    # Same labels on both sides: upstream is given the resource-attribute filter otel_ml uses.
    upstream = PrometheusMetricReader(
        registry=upstream_registry, resource_attribute_filter=WORKER_RESOURCE_ATTRIBUTES.__contains__
    )
    feed(MeterProvider(metric_readers=[ours]), tracer, 1)
    feed(MeterProvider(metric_readers=[upstream]), tracer, 1)

    def timed(render) -> float:  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        render()
        return (time.perf_counter() - start) * 1e3

    variants = {
        "upstream (text)": lambda: timed(lambda: generate_latest(upstream_registry)),
        "upstream (OpenMetrics, no exemplars)": lambda: timed(lambda: generate_openmetrics(upstream_registry)),
        "otel_ml (text)": lambda: timed(lambda: generate_latest(ours.registry)),
        "otel_ml (OpenMetrics + exemplars)": lambda: timed(lambda: generate_openmetrics(ours.registry)),
    }
    body_ours = generate_openmetrics(ours.registry).decode()
    series = sum(1 for line in body_ours.splitlines() if line and not line.startswith("#"))
    exemplars = body_ours.count(" # {")
    samples = _common.interleave(variants, args.rounds)
    base = _common.median(samples["upstream (text)"])
    om = _common.median(samples["upstream (OpenMetrics, no exemplars)"])
    rows = ["| variant | median ms/scrape | ratio to upstream |", "|---|---:|---:|"]
    for name, values in samples.items():
        rows.append(f"| {name} | {_common.median(values):.3f} | {_common.median(values) / base:.3f} |")
    worst = max(_common.median(v) for k, v in samples.items() if k.startswith("otel_ml"))
    body = (
        f"Registry: training metrics of {RUNS} runs + GPU gauges for {GPUS} devices = {series} samples per scrape "
        f"({exemplars} exemplars in OpenMetrics). {args.rounds} interleaved rounds; each sample is a full scrape "
        "(SDK collection, translation, exposition).\n\n" + "\n".join(rows) + "\n\n"
        f"- target under 5 ms per scrape: slowest otel_ml variant **{worst:.3f} ms** "
        f"({'met' if worst < 5 else 'NOT met'})\n"
        f"- target no slower than upstream: otel_ml text {_common.median(samples['otel_ml (text)']) / base:.3f}x "
        "upstream text; otel_ml OpenMetrics with exemplars "
        f"{_common.median(samples['otel_ml (OpenMetrics + exemplars)']) / om:.3f}x upstream OpenMetrics "
        "(same registry, same format)\n"
    )
    path = _common.write(
        "exporter", "Embedded endpoint render time", "python bench/bench_exporter.py " + " ".join(sys.argv[1:]), body
    )
    print(path.read_text())


if __name__ == "__main__":
    main()
