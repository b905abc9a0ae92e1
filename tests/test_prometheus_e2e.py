"""The embedded endpoint scraped by a real Prometheus 2.42 with exemplar storage."""

from __future__ import annotations

import time

import pytest

from tests import _net
from tests._prometheus import prometheus, require_prometheus

pytestmark = pytest.mark.slow

EPOCHS, SAMPLES, BATCH, SLOW_STEP = 3, 512, 32, 21
STEPS = EPOCHS * SAMPLES // BATCH


def test_prometheus_sees_exact_steps_quantiles_and_the_slow_steps_exemplar(tmp_path) -> None:
    require_prometheus()
    started = time.time()
    train, base = _net.start_example(
        tmp_path / "train.log",
        instrument=False,
        slow_step=SLOW_STEP,
        slow_seconds=0.6,
        threshold=0.4,
        epochs=EPOCHS,
        samples=SAMPLES,
        batch_size=BATCH,
    )
    try:
        with prometheus(tmp_path, [base.removeprefix("http://")]) as prom:
            _net.wait_for(lambda: "fit finished" in (tmp_path / "train.log").read_text(), 120, "training to end")

            def steps() -> float | None:
                result = prom.query('ml_train_steps_total{ml_run_name="demo_mlp"}')
                return float(result[0]["value"][1]) if result and float(result[0]["value"][1]) == STEPS else None

            assert _net.wait_for(steps, 30, "Prometheus to scrape the final step count") == STEPS

            quantile = prom.query("histogram_quantile(0.5, sum by (le) (ml_train_step_duration_seconds_bucket))")
            assert len(quantile) == 1 and 0 < float(quantile[0]["value"][1]) < 0.4

            def slow_exemplar() -> list[dict[str, str]] | None:
                found = prom.exemplars("ml_train_step_duration_seconds_bucket", started - 60, time.time() + 60)
                labels = [e["labels"] for series in found for e in series["exemplars"] if float(e["value"]) >= 0.6]
                return labels or None

            (exemplar,) = _net.wait_for(slow_exemplar, 30, "the slow step's exemplar in Prometheus")
            view = _net.get_json(f"{base}/slow-steps?trace_id={exemplar['trace_id']}")
            (span,) = view["slow_steps"]
            assert span["name"] == "keras.train_step"
            assert span["attributes"]["ml.step"] == SLOW_STEP
            assert span["span_id"] == exemplar["span_id"]
    finally:
        _net.stop(train)
