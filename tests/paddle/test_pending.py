"""Fast runs are handed to the SDK in batches: no collection may miss one, and none is counted twice."""

from __future__ import annotations

import threading

import pytest

from otel_ml._core import semconv as sc
from otel_ml.paddle import PaddleInstrumentor, _run
from tests.paddle._helpers import new_predictor, run_zero_copy

MODEL = "iris_mlp"
NEVER = 10**12  # a flush deadline (ns) no test reaches: only collections hand runs over


def _instrument(telemetry) -> None:  # type: ignore[no-untyped-def]
    telemetry.instrument(PaddleInstrumentor, slow_run_seconds=10.0, inference_warmup_runs=0)


def _pending() -> int:
    hooks = PaddleInstrumentor()._hooks
    assert hooks is not None
    return sum(len(m.pending) + len(m.pending_batches) for m in hooks.registry.models())


def test_a_collection_sees_runs_made_just_before_it(telemetry, model_prefix, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(_run, "FLUSH_NS", NEVER)
    _instrument(telemetry)
    predictor = new_predictor(model_prefix)
    run_zero_copy(predictor, 2)  # the first run passes the initial deadline and flushes itself
    for _ in range(4):
        run_zero_copy(predictor, 3)
    assert _pending() == 8  # 4 durations and 4 batch sizes wait for a flush ...
    [duration] = telemetry.model_points(sc.METRIC_INFERENCE_DURATION, MODEL)  # ... and one collection takes them
    assert duration.count == 5
    [batch] = telemetry.model_points(sc.METRIC_INFERENCE_BATCH_SIZE, MODEL)
    assert (batch.count, batch.sum) == (5, 2 + 4 * 3)
    assert _pending() == 0
    run_zero_copy(predictor, 1)
    [batch] = telemetry.model_points(sc.METRIC_INFERENCE_BATCH_SIZE, MODEL)  # cumulative: nothing counted twice
    assert (batch.count, batch.sum) == (6, 15)


def test_uninstrument_hands_over_what_is_pending(telemetry, model_prefix, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(_run, "FLUSH_NS", NEVER)
    _instrument(telemetry)
    predictor = new_predictor(model_prefix)
    for _ in range(3):
        run_zero_copy(predictor, 2)
    assert _pending() == 4
    PaddleInstrumentor().uninstrument()
    assert sum(p.count for p in telemetry.points(sc.METRIC_INFERENCE_DURATION)) == 3
    assert sum(p.sum for p in telemetry.points(sc.METRIC_INFERENCE_BATCH_SIZE)) == 6


@pytest.mark.parametrize("flush_ns", [0, NEVER], ids=["every-run-flushes", "only-collections-flush"])
def test_scrape_right_after_concurrent_runs_shows_exactly_n(telemetry, model_prefix, monkeypatch, flush_ns) -> None:  # type: ignore[no-untyped-def]
    """Threads run while another thread scrapes; the scrape after they join has every run, once."""
    monkeypatch.setattr(_run, "FLUSH_NS", flush_ns)
    _instrument(telemetry)
    clones = [new_predictor(model_prefix) for _ in range(5)]
    runs_each = 120
    errors: list[BaseException] = []
    done = threading.Event()

    def work(predictor) -> None:  # type: ignore[no-untyped-def]
        try:
            for i in range(runs_each):
                run_zero_copy(predictor, 1 + i % 3)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def scrape() -> None:
        while not done.is_set():
            telemetry.reader.get_metrics_data()

    scraper = threading.Thread(target=scrape)
    scraper.start()
    threads = [threading.Thread(target=work, args=(c,)) for c in clones]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    done.set()
    scraper.join(timeout=60)
    assert errors == [] and not any(t.is_alive() for t in threads) and not scraper.is_alive()
    [point] = telemetry.model_points(sc.METRIC_INFERENCE_DURATION, MODEL)
    assert point.count == 5 * runs_each
    [batch] = telemetry.model_points(sc.METRIC_INFERENCE_BATCH_SIZE, MODEL)
    assert batch.count == 5 * runs_each and batch.sum == 5 * sum(1 + i % 3 for i in range(runs_each))
    [active] = telemetry.model_points(sc.METRIC_INFERENCE_ACTIVE, MODEL)
    assert active.value == 0
