"""Many fits in one process (a hyperparameter sweep): bounded label values, exact newest figures.

In process (both Keras flavours): the bound's semantics with a small limit.
In a subprocess: 500 trials under ``opentelemetry-instrument``, scraped from
the embedded endpoint and parsed as Prometheus parses it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import otel_ml
from otel_ml._core import cardinality
from otel_ml._core import semconv as sc
from tests import _keras_models as km
from tests import _net


def test_pairs_past_the_limit_overflow_with_one_warning(telemetry, kit, caplog) -> None:  # type: ignore[no-untyped-def]
    """A plain loop (Keras names each model anew): 3 pairs exact, the next ones under ``_overflow``."""
    otel_ml.instrument(meter_provider=telemetry.meter_provider, tracer_provider=telemetry.tracer_provider, max_runs=3)
    x, y = km.data(samples=32)
    names = []
    with caplog.at_level(logging.WARNING, logger="otel_ml"):
        for trial in range(6):
            model = kit.frozen(name=f"trial_model_{trial}")
            model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
            names.append(model.name)
        kit.frozen(name="trial_model_0").fit(x, y, batch_size=16, epochs=1, verbose=0)  # an admitted pair again
    warnings = [r for r in caplog.records if cardinality.OVERFLOW in r.getMessage()]
    assert len(warnings) == 1
    steps = {p.attributes[sc.ML_MODEL_NAME]: p.value for p in telemetry.points(sc.METRIC_TRAIN_STEPS)}
    assert steps == {"trial_model_0": 4, "trial_model_1": 2, "trial_model_2": 2, cardinality.OVERFLOW: 6}
    runs = {p.attributes[sc.ML_RUN_NAME] for p in telemetry.points(sc.METRIC_TRAIN_STEPS)}
    assert runs == {"trial_model_0", "trial_model_1", "trial_model_2", cardinality.OVERFLOW}
    # Spans keep the real names.
    fits = [s.attributes[sc.ML_MODEL_NAME] for s in telemetry.finished(sc.SPAN_KERAS_FIT)]
    assert fits == [*names, "trial_model_0"]


def test_trials_named_with_run_share_the_model_class_name(telemetry, kit) -> None:  # type: ignore[no-untyped-def]
    otel_ml.instrument(meter_provider=telemetry.meter_provider, tracer_provider=telemetry.tracer_provider)
    x, y = km.data(samples=32)
    k = kit.keras
    models = []
    for trial in range(3):
        model = k.Sequential([k.Input((4,)), k.layers.Dense(1)])  # Keras names it sequential, sequential_1, ...
        model.compile("sgd", "mse")
        with otel_ml.run(f"trial-{trial}"):
            model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        models.append(model.name)
    named = kit.sequential(name="wide_and_deep")
    with otel_ml.run("trial-3"):
        named.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert len(set(models)) == 3
    steps = {(p.attributes[sc.ML_MODEL_NAME], p.attributes[sc.ML_RUN_NAME]): p.value
             for p in telemetry.points(sc.METRIC_TRAIN_STEPS)}  # fmt: skip
    assert steps == {
        ("sequential", "trial-0"): 2, ("sequential", "trial-1"): 2, ("sequential", "trial-2"): 2,
        ("wide_and_deep", "trial-3"): 2,
    }  # fmt: skip
    assert [s.attributes[sc.ML_MODEL_NAME] for s in telemetry.finished(sc.SPAN_KERAS_FIT)] == [*models, "wide_and_deep"]


def _pairs(telemetry: Any) -> dict[tuple[str, str], int]:
    """Each (model, run) label pair of one collection, with its count of series."""
    data = telemetry.reader.get_metrics_data()
    pairs: dict[tuple[str, str], int] = {}
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    if sc.ML_RUN_NAME in point.attributes:
                        pair = (point.attributes[sc.ML_MODEL_NAME], point.attributes[sc.ML_RUN_NAME])
                        pairs[pair] = pairs.get(pair, 0) + 1
    return pairs


@pytest.fixture
def releasing(telemetry):  # type: ignore[no-untyped-def]
    """The test's SDK provider, with the releaser otel_ml registers for the provider it builds."""
    from otel_ml.distro._sdk import series_releaser

    yield lambda: cardinality.set_releaser(series_releaser(telemetry.meter_provider))
    cardinality.set_releaser(None)


def test_past_the_limit_the_least_recently_finished_pair_is_released(telemetry, kit, caplog, releasing) -> None:  # type: ignore[no-untyped-def]
    """With a releaser, a new pair past the limit takes the place of the least recently finished one, exactly."""
    otel_ml.instrument(meter_provider=telemetry.meter_provider, tracer_provider=telemetry.tracer_provider, max_runs=3)
    releasing()
    x, y = km.data(samples=32)
    k = kit.keras
    truth: dict[str, dict[str, float]] = {}

    def trial(name: str, model: Any = None, epochs: int = 1) -> Any:
        if model is None:
            model = k.Sequential([k.Input((4,)), k.layers.Dense(1)])
            model.compile(k.optimizers.SGD(0.05), "mse")
        with otel_ml.run(name):
            history = model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)  # one batch an epoch
        seen = truth.setdefault(name, {"steps": 0, "samples": 0})
        seen["steps"] += epochs
        seen["samples"] += 32 * epochs
        seen["loss"] = history.history["loss"][-1]
        assert int(model.optimizer.iterations.numpy()) == seen["steps"]
        assert len(_pairs(telemetry)) <= 3  # bounded at any time
        return model

    with caplog.at_level(logging.WARNING, logger="otel_ml"):
        models = [trial(f"trial-{i}", epochs=1 + i % 2) for i in range(8)]
        trial("trial-5", models[5])  # trial-5 is now the most recently finished: trial-6 goes first
        trial("trial-8")
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("otel_ml")]
    assert len(warnings) == 1 and "released" in warnings[0], warnings
    expected = {("sequential", name) for name in ("trial-5", "trial-7", "trial-8")}
    pairs = _pairs(telemetry)
    assert set(pairs) == expected and len(set(pairs.values())) == 1, pairs  # the oldest are gone, no _overflow
    steps = {p.attributes[sc.ML_RUN_NAME]: p.value for p in telemetry.points(sc.METRIC_TRAIN_STEPS)}
    samples = {p.attributes[sc.ML_RUN_NAME]: p.value for p in telemetry.points(sc.METRIC_TRAIN_SAMPLES)}
    losses = {
        p.attributes[sc.ML_RUN_NAME]: p.value
        for p in telemetry.points(sc.METRIC_TRAIN_LOSS)
        if p.attributes.get(sc.ML_PHASE) == sc.PHASE_TRAIN
    }
    for _, name in expected:
        assert steps[name] == truth[name]["steps"] and samples[name] == truth[name]["samples"]
        assert losses[name] == pytest.approx(truth[name]["loss"], rel=2e-5)
    assert steps["trial-5"] == 3  # both fits of trial-5 (2 + 1 epochs): a pair that stays admitted keeps counting
    # Spans keep every trial's name.
    assert [s.attributes[sc.ML_RUN_NAME] for s in telemetry.finished(sc.SPAN_KERAS_FIT)] == [
        *(f"trial-{i}" for i in range(8)), "trial-5", "trial-8",
    ]  # fmt: skip


def test_a_running_fit_is_never_released(telemetry, kit, releasing) -> None:  # type: ignore[no-untyped-def]
    """An outer fit whose callback trains fresh inner models (a linear probe each epoch) keeps its series."""
    otel_ml.instrument(meter_provider=telemetry.meter_provider, tracer_provider=telemetry.tracer_provider, max_runs=2)
    releasing()
    k = kit.keras
    x, y = km.data(samples=64)
    inner_steps: list[int] = []

    class Probes(k.callbacks.Callback):  # type: ignore[misc,name-defined]
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            for i in range(3):
                probe = kit.sequential(name=f"probe_{epoch}_{i}")
                probe.fit(x[:16], y[:16], batch_size=8, epochs=1, verbose=0)
                inner_steps.append(int(probe.optimizer.iterations.numpy()))
                assert len(_pairs(telemetry)) <= 2

    outer = kit.sequential(name="outer")
    outer.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[Probes()])
    assert inner_steps == [2] * 9
    pairs = _pairs(telemetry)
    assert set(pairs) == {("outer", "outer"), ("probe_2_2", "probe_2_2")}, pairs
    steps = {p.attributes[sc.ML_MODEL_NAME]: p.value for p in telemetry.points(sc.METRIC_TRAIN_STEPS)}
    samples = {p.attributes[sc.ML_MODEL_NAME]: p.value for p in telemetry.points(sc.METRIC_TRAIN_SAMPLES)}
    assert int(outer.optimizer.iterations.numpy()) == 12  # 3 epochs of 4 batches, all counted: never released
    assert steps == {"outer": 12, "probe_2_2": 2}
    assert samples == {"outer": 192, "probe_2_2": 16}


def test_where_series_cannot_be_withdrawn_pairs_overflow(telemetry, kit, releasing) -> None:  # type: ignore[no-untyped-def]
    """An SDK whose storage is not as probed (forced fallback): the releaser declines, fits overflow as before."""
    from otel_ml.distro import _sdk_internals

    otel_ml.instrument(meter_provider=telemetry.meter_provider, tracer_provider=telemetry.tracer_provider, max_runs=2)
    releasing()
    x, y = km.data(samples=32)
    with _sdk_internals.forced_fallbacks(_sdk_internals.FORGET_SERIES):
        for trial in range(4):
            kit.frozen(name=f"trial_model_{trial}").fit(x, y, batch_size=16, epochs=1, verbose=0)
    steps = {p.attributes[sc.ML_MODEL_NAME]: p.value for p in telemetry.points(sc.METRIC_TRAIN_STEPS)}
    assert steps == {"trial_model_0": 2, "trial_model_1": 2, cardinality.OVERFLOW: 4}


TRIALS = 500
LIMIT = cardinality.DEFAULT_LIMIT


def _training_samples(text: str) -> list[Any]:
    """The training series of one scrape, parsed as Prometheus parses it."""
    families = text_string_to_metric_families(text)
    return [s for f in families for s in f.samples if not s.name.endswith("_created") and "ml_run_name" in s.labels]


@pytest.mark.slow
def test_a_sweep_of_500_trials_is_bounded_and_its_newest_trials_exact(tmp_path: Path) -> None:
    """500 real fits (one step each, Keras 3 on JAX, eager: the fastest real fit here, about 0.1 s each).

    Under ``opentelemetry-instrument`` otel_ml builds the SDK provider, so the
    series of finished trials are released past the limit: every scrape (one
    each 50 trials, and the last) holds at most ``LIMIT`` pairs, the last one
    exactly the newest ``LIMIT`` trials with their own figures.
    Marked slow: 500 fits take about a minute on two shared cores; fewer
    would not show that the series stop growing with the trials.
    """
    env = {**os.environ, "PYTHONPATH": str(_net.ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    env.update(
        KERAS_BACKEND="jax",
        JAX_PLATFORMS="cpu",
        OTEL_EXPORTER_PROMETHEUS_PORT=str(_net.free_port()),
        SWEEP_TRUTH=str(tmp_path / "truth.jsonl"),
        SWEEP_METRICS=str(tmp_path / "metrics.txt"),
    )
    env.pop("OTEL_ML_MAX_RUNS", None)
    program = _net.ROOT / "tests" / "programs" / "_sweep.py"
    cmd = [str(Path(sys.executable).parent / "opentelemetry-instrument"), sys.executable, str(program), str(TRIALS)]
    started = time.monotonic()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    otel_lines = [line for line in done.stderr.splitlines() if "otel_ml" in line]
    assert len(otel_lines) == 1 and "released" in otel_lines[0], otel_lines

    truth = [json.loads(line) for line in (tmp_path / "truth.jsonl").read_text().splitlines()]
    assert len(truth) == TRIALS and len({t["model"] for t in truth}) == TRIALS  # Keras named each model anew
    text = (tmp_path / "metrics.txt").read_text()
    training = _training_samples(text)
    pairs = {(s.labels["ml_model_name"], s.labels["ml_run_name"]) for s in training}
    newest = truth[-LIMIT:]
    assert pairs == {("sequential", t["trial"]) for t in newest}  # the oldest are gone, nothing under _overflow

    def series(pair: tuple[str, str]) -> list[Any]:
        return [s for s in training if (s.labels["ml_model_name"], s.labels["ml_run_name"]) == pair]

    per_pair = len(series(("sequential", truth[-1]["trial"])))
    assert all(len(series(p)) == per_pair for p in pairs), "each pair has the same series"
    assert len(training) == LIMIT * per_pair
    sizes = []
    for trial in range(49, TRIALS, 50):  # every scrape during the sweep: at most LIMIT pairs, the newest ones
        during = (tmp_path / f"metrics.txt.{trial}").read_text()
        during_pairs = {(s.labels["ml_model_name"], s.labels["ml_run_name"]) for s in _training_samples(during)}
        admitted = {("sequential", f"trial-{i}") for i in range(max(0, trial + 1 - LIMIT), trial + 1)}
        assert during_pairs == admitted, trial
        sizes.append(len(during.encode()))
    size = len(text.encode())
    assert max(sizes[1:]) <= size * 1.05  # past the limit the scrape stops growing with the trials
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples if not s.name.endswith("_created")]
    print(f"\n{TRIALS} trials in {took:.0f} s: {len(samples)} series ({len(training)} training, {per_pair} per pair), "
          f"scrape {size} bytes; scrapes every 50 trials {min(sizes)}..{max(sizes)} bytes")  # fmt: skip

    def value(name: str, pair: tuple[str, str], **labels: str) -> float:
        (found,) = [
            s.value for s in series(pair) if s.name == name and all(s.labels[k] == v for k, v in labels.items())
        ]
        return float(found)

    for t in newest:  # the newest trials: their own figures
        pair = ("sequential", t["trial"])
        assert value("ml_train_steps_total", pair) == t["steps"] == 1
        assert value("ml_train_samples_total", pair) == t["samples"]
        assert value("ml_train_epochs_total", pair) == 1
        assert value("ml_train_loss", pair, ml_phase="train") == pytest.approx(t["loss"], rel=2e-5)
        assert value("ml_train_learning_rate", pair) == pytest.approx(t["learning_rate"], rel=1e-6)
