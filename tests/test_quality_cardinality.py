"""Two ImageNet models in one service: every class's quality series exact on /metrics, none in the SDK's overflow.

One ``ModelQuality(classes=range(1000))`` makes 2,001 ``ml.model.outcomes``
series, 1,001 ``ml.model.false_positives`` and 1,001 ``ml.model.predictions``
series at 0; the OpenTelemetry SDK (1.45.2 on) keeps 2,000 series per
instrument by default and folds the rest into one ``otel.metric.overflow``
series. The providers otel_ml builds give those instruments a limit derived
from otel_ml's own bounds (``otel_ml.serving._quality.series_limits``), so two
such models, in one process or summed from the workers of a pre-fork server,
read exact. Each case runs tests/_quality_program.py in its own process on
the default set-up and scrapes ``/metrics`` as Prometheus does (classic text
and OpenMetrics, parsed by prometheus_client, checked by promtool).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests import _net
from tests._quality_program import CLASSES, model_name
from tests._scrape import check_scrape

pytestmark = pytest.mark.slow

PROGRAM = _net.ROOT / "tests" / "_quality_program.py"
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
OWN = ("ml_model_name", "ml_prediction_label", "ml_truth_label", "ml_prediction_correct")


@contextmanager
def program(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[tuple[int, Path]]:
    """Run the program; yield (port, stderr file) once it is READY; stop it by its PID."""
    port = _net.free_port()
    stdout, stderr = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    full_env = {
        **os.environ,
        "PYTHONPATH": str(_net.ROOT),
        "PYTHONUNBUFFERED": "1",
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
        "OTEL_SERVICE_NAME": "quality",
        "OTEL_ML_MULTIPROCESS": "off",
        **(env or {}),
    }
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(PROGRAM), str(tmp_path), *args],
            cwd=_net.ROOT,
            env=full_env,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    try:

        def ready() -> bool:
            assert proc.poll() is None, f"the program exited: {stderr.read_text()[-3000:]}"
            return "READY" in stdout.read_text()

        _net.wait_for(ready, 120, "the program to be READY")
        yield port, stderr
    finally:
        (tmp_path / "stop").touch()
        _net.stop(proc)


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> own labels -> value, from one classic and one OpenMetrics scrape (checked alike)."""
    base = f"http://127.0.0.1:{port}/metrics"
    status, _, text = _net.get(base, timeout=30)
    assert status == 200
    status, _, openmetrics = _net.get(base, accept=OPENMETRICS, timeout=30)
    assert status == 200
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in check_scrape(text, openmetrics).values():
        for sample in family.samples:
            # (The endpoint renders a key some point of the family lacks as "": only "true" is an overflow.)
            assert sample.labels.get("otel_metric_overflow", "") == "", sample
            own = tuple((k, sample.labels.get(k, "")) for k in OWN)
            series = found.setdefault(sample.name, {})
            series[own] = series.get(own, 0) + sample.value
    return found


def expected(models: int, summed_by: int = 1) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every series of ``models`` models of tests/_quality_program.py, with the counts its plan makes."""
    want: dict[str, dict[tuple[tuple[str, str], ...], float]] = {
        "ml_model_predictions_total": {},
        "ml_model_outcomes_total": {},
        "ml_model_false_positives_total": {},
    }

    def key(m: int, predicted: str = "", truth: str = "", correct: str = "") -> tuple[tuple[str, str], ...]:
        return tuple(zip(OWN, (model_name(m), predicted, truth, correct), strict=True))

    for m in range(models):
        labels = [str(k) for k in range(CLASSES)]
        for k, label in enumerate(labels):
            right, wrong = int(k % 3 == m), int(k % 7 == m)
            want["ml_model_predictions_total"][key(m, predicted=label)] = right + wrong
            want["ml_model_false_positives_total"][key(m, predicted=label)] = wrong
            want["ml_model_outcomes_total"][key(m, label, label, "true")] = right
            want["ml_model_outcomes_total"][key(m, truth=label, correct="false")] = int((k - 1) % CLASSES % 7 == m)
        want["ml_model_predictions_total"][key(m, predicted="_OTHER")] = 0
        want["ml_model_false_positives_total"][key(m, predicted="_OTHER")] = 0
        want["ml_model_outcomes_total"][key(m, truth="_OTHER", correct="false")] = 0
    return want


def quality_series(found: dict[str, Any]) -> dict[str, Any]:
    return {name: found.get(name, {}) for name in expected(0)}


def test_two_imagenet_models_in_one_process_are_exact_per_class(tmp_path: Path) -> None:
    with program(tmp_path, "one") as (port, stderr):
        found = quality_series(scrape(port))
    want = expected(2)
    # 2 x 2,001 outcome series, 2 x 1,001 false-positive and prediction series: each value as the plan made it.
    assert {name: len(series) for name, series in found.items()} == {
        "ml_model_predictions_total": 2002,
        "ml_model_outcomes_total": 4002,
        "ml_model_false_positives_total": 2002,
    }
    assert found == want
    assert sum(found["ml_model_outcomes_total"].values()) == (334 + 143) + (333 + 143)
    assert "WARNING" not in stderr.read_text() and "ERROR" not in stderr.read_text()


def test_two_imagenet_models_summed_over_pre_fork_workers_are_exact_per_class(tmp_path: Path) -> None:
    directory = tmp_path / "multiprocess"
    env = {"OTEL_ML_MULTIPROCESS": "on", "OTEL_ML_MULTIPROCESS_DIR": str(directory)}
    with program(tmp_path, "workers", env=env) as (port, stderr):
        want = expected(2)

        def merged() -> dict[str, Any] | None:
            found = quality_series(scrape(port))
            return found if found == want else None

        found = _net.wait_for(merged, 60, "both workers' points on the endpoint", interval=1.0)
    assert {name: len(series) for name, series in found.items()} == {
        "ml_model_predictions_total": 2002,
        "ml_model_outcomes_total": 4002,
        "ml_model_false_positives_total": 2002,
    }
    assert "WARNING" not in stderr.read_text() and "ERROR" not in stderr.read_text()


# --- the bounds behind the limits -------------------------------------------------------------


def test_the_split_wildcard_view_matches_every_name_once_and_the_limited_names_never() -> None:
    """The views that replace ``"*"``: an instrument matched by two views would be exported twice."""
    from fnmatch import fnmatchcase

    from otel_ml._core import semconv as sc
    from otel_ml.distro._views import bounded_limits, names_except

    limited = set(bounded_limits())
    assert limited == {
        sc.METRIC_MODEL_OUTCOMES,
        sc.METRIC_MODEL_FALSE_POSITIVES,
        sc.METRIC_MODEL_PREDICTIONS,
        sc.METRIC_INFERENCE_DURATION,
    }
    patterns = names_except(limited)
    others = {value for value in vars(sc).values() if isinstance(value, str) and value.startswith(("ml.", "hw."))}
    others |= {"m", "ml", "ml.model", "ml.model.", "ml.model.o", "ml.model.outcomesx", "ml.model.outcome", "x", "/"}
    others |= {"ml.model.predictions.total", "http.server.request.duration", "ml.model.load.duration", "ml-model"}
    others |= {"ml.inference.duration.x", "ml.inference.durations", "ml.inference.dura", "ml.inference.batch.size"}
    for name in sorted(others - limited):
        assert len([p for p in patterns if fnmatchcase(name, p)]) == 1, name
    for name in limited:
        assert not [p for p in patterns if fnmatchcase(name, p)], name


def test_past_the_models_a_process_records_one_warning_says_which_model_is_dropped(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from otel_ml._core import semconv as sc
    from otel_ml.serving import _quality
    from otel_ml.serving._quality import MAX_MODELS, ModelQuality

    monkeypatch.setattr(_quality, "_warned", [])
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        with caplog.at_level("WARNING", logger="otel_ml"):
            kept = [ModelQuality(f"m{i}", classes=[0, 1], meter_provider=provider) for i in range(MAX_MODELS)]
            again = ModelQuality("m0", classes=[0, 1], meter_provider=provider)  # the same model: admitted
            assert not caplog.records
            dropped = ModelQuality("late", classes=range(5), version=2, meter_provider=provider)
            also = ModelQuality("later", classes=[0, 1], meter_provider=provider)
        [line] = [r.getMessage() for r in caplog.records]
        assert "'late' (version 2, 5 classes) is not recorded" in line
        assert f"already records {MAX_MODELS} models" in line
        for quality in (kept[0], again, dropped, also):
            assert quality.observed(1, token=quality.predicted(0))  # tokens work whether recorded or not
        data = reader.get_metrics_data()
        assert data is not None
        points = [
            (m.name, dict(p.attributes or {}), getattr(p, "value", None))
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            for p in m.data.data_points
        ]
        assert {a[sc.ML_MODEL_NAME] for _, a, _ in points} == {f"m{i}" for i in range(MAX_MODELS)}
        wrong = [(a[sc.ML_TRUTH_LABEL], v) for n, a, v in points if n == sc.METRIC_MODEL_OUTCOMES and v]
        assert wrong == [("1", 2)]  # m0's two wrong outcomes (two objects, one model); none of the dropped ones
    finally:
        provider.shutdown()


def test_the_views_otel_ml_builds_give_exactly_the_bound_to_the_bounded_instruments_and_the_default_to_others() -> None:
    """Paddle's run duration holds its 2,340 series; a 2,341st overflows, as a 2,001st of any other instrument does.

    On an SDK without a series limit (before 1.45.2) nothing overflows at all.
    """
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from otel_ml._core import semconv as sc
    from otel_ml.distro._private_random import seed_safe_views
    from otel_ml.distro._views import bounded_limits, view_takes_limit

    limit = bounded_limits()[sc.METRIC_INFERENCE_DURATION]
    assert limit == 2340
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], views=seed_safe_views(bounded_limits()))
    meter = provider.get_meter("test")
    duration, other = meter.create_histogram(sc.METRIC_INFERENCE_DURATION), meter.create_counter("other")
    try:
        for i in range(limit + 1):
            duration.record(0.5, {"series": i})
        for i in range(2001):
            other.add(1, {"series": i})
        data = reader.get_metrics_data()
    finally:
        provider.shutdown()
    assert data is not None
    counts: dict[str, tuple[int, int]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                points: list[Any] = list(metric.data.data_points)
                overflow = len([p for p in points if (p.attributes or {}).get("otel.metric.overflow")])
                assert metric.name not in counts, f"{metric.name} exported twice"
                counts[metric.name] = (len(points) - overflow, overflow)
    if view_takes_limit():
        assert counts == {sc.METRIC_INFERENCE_DURATION: (limit, 1), "other": (2000, 1)}
    else:
        assert counts == {sc.METRIC_INFERENCE_DURATION: (limit + 1, 0), "other": (2001, 0)}
