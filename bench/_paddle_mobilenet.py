"""Part 3 of bench_paddle.py: per-run overhead on a real model, paddle.vision MobileNetV2 at batch 1.

The model is built locally with random weights (``pretrained=False``: nothing
is downloaded) and saved with ``paddle.jit.save``. Two measurements:

- direct: under otel_ml, the wall time around each ``run()`` minus the
  duration otel_ml recorded for it (the histogram's sum), per run;
- interleaved: rounds of plain and instrumented runs of the same predictor,
  medians of per-round means.
"""

from __future__ import annotations

import os
import time
from typing import Any

import _common
import numpy as np
import paddle
import paddle.inference as pi
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

from otel_ml.paddle import PaddleInstrumentor


def save_mobilenet(directory: str) -> str:
    from paddle.vision.models import mobilenet_v2

    paddle.seed(0)
    net = mobilenet_v2(pretrained=False)
    net.eval()
    prefix = os.path.join(directory, "mobilenet_v2", "inference")
    spec = [paddle.static.InputSpec([None, 3, 224, 224], "float32", "x")]
    paddle.jit.save(net, prefix, input_spec=spec)
    return prefix


def predictor(prefix: str) -> Any:
    config = pi.Config(prefix + ".json", prefix + ".pdiparams")
    config.disable_glog_info()
    p = pi.create_predictor(config)
    handle = p.get_input_handle(p.get_input_names()[0])
    handle.reshape([1, 3, 224, 224])
    handle.copy_from_cpu(np.random.default_rng(0).normal(size=(1, 3, 224, 224)).astype("float32"))
    return p


def bench_mobilenet(rounds: int, runs: int, tmp: str) -> tuple[str, dict[str, float]]:
    prefix = save_mobilenet(tmp)
    inst = PaddleInstrumentor()
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    model = predictor(prefix)
    for _ in range(5):
        model.run()  # warm-up, untimed

    def timed() -> float:
        run, perf = model.run, time.perf_counter_ns
        total = 0
        for _ in range(runs):
            t0 = perf()
            run()
            total += perf() - t0
        return total / runs / 1e3

    def variant(instrumented: bool) -> Any:
        def once() -> float:
            if inst.is_instrumented_by_opentelemetry:
                inst.uninstrument()
            if instrumented:
                inst.instrument(meter_provider=meter_provider, tracer_provider=TracerProvider())
            return timed()

        return once

    samples = _common.interleave({"plain": variant(False), "otel_ml": variant(True)}, rounds)
    # Direct: wall time around run() minus what otel_ml recorded for the same runs.
    if inst.is_instrumented_by_opentelemetry:
        inst.uninstrument()
    inst.instrument(meter_provider=meter_provider, tracer_provider=TracerProvider(), inference_warmup_runs=0)
    reader.collect()  # start from a clean cumulative sum
    before = _recorded(reader)
    wall = timed() * runs
    after = _recorded(reader)
    inst.uninstrument()
    recorded_us = (after[0] - before[0]) * 1e6
    direct = (wall - recorded_us) / (after[1] - before[1])
    plain, otel = _common.median(samples["plain"]), _common.median(samples["otel_ml"])
    rows = [
        "| MobileNetV2, batch 1 | µs per run |",
        "|---|---:|",
        f"| plain run (median of {rounds} interleaved rounds of {runs}) | {plain:.0f} |",
        f"| under otel_ml | {otel:.0f} |",
        f"| added, interleaved rounds | {otel - plain:+.1f} ({(otel - plain) / plain * 100:+.2f} %) |",
        f"| added, direct (wall around run() minus recorded duration, {runs} runs) | {direct:+.1f} "
        f"({direct / plain * 100:+.3f} %) |",
    ]
    return "\n".join(rows), {"plain": plain, "otel_ml": otel, "direct": direct}


def _recorded(reader: InMemoryMetricReader) -> tuple[float, int]:
    """(sum in seconds, count) of ml.inference.duration so far."""
    data = reader.get_metrics_data()
    total, count = 0.0, 0
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == "ml.inference.duration":
                    for point in metric.data.data_points:
                        total += point.sum
                        count += point.count
    return total, count
