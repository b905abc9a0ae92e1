"""``opentelemetry-instrument python examples/keras_train.py`` in a real subprocess, scraped over HTTP."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests import _net

pytestmark = pytest.mark.slow

EPOCHS, SAMPLES, BATCH, SLOW_STEP = 2, 256, 32, 11
STEPS = EPOCHS * SAMPLES // BATCH


def _train(tmp_path, env: dict[str, str]):  # type: ignore[no-untyped-def]
    return _net.start_example(
        tmp_path / "train.log",
        instrument=True,
        slow_step=SLOW_STEP,
        slow_seconds=0.5,
        threshold=0.3,
        env=env,
        epochs=EPOCHS,
        samples=SAMPLES,
        batch_size=BATCH,
    )


def test_no_framework_is_imported_by_otel_ml_or_its_entry_points() -> None:
    code = (
        "import sys, otel_ml, otel_ml.distro.configurator, otel_ml.distro.endpoint, otel_ml.distro.cli\n"
        "from importlib.metadata import entry_points\n"
        "groups = ('opentelemetry_instrumentor', 'opentelemetry_configurator', 'opentelemetry_metrics_exporter')\n"
        "loaded = [ep.load() for g in groups for ep in entry_points(group=g) if ep.value.startswith('otel_ml')]\n"
        "assert len(loaded) >= 3, loaded\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'paddle', 'pynvml'))\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=_net.ROOT)
    assert out.stdout.strip() == "[]"


def test_opentelemetry_instrument_exports_exact_steps_and_the_slow_step(tmp_path) -> None:
    tf_config = '{"cluster": {"worker": ["w0:1", "w1:1", "w2:1", "w3:1"]}, "task": {"type": "worker", "index": 3}}'
    proc, base = _train(tmp_path, {"OTEL_SERVICE_NAME": "trainer", "TF_CONFIG": tf_config})
    try:

        def steps() -> float | None:
            family = _net.openmetrics(base + "/metrics").get("ml_train_steps")
            values = [s.value for s in family.samples if s.name == "ml_train_steps_total"] if family else []
            return values[0] if values and values[0] >= STEPS else None

        assert _net.wait_for(steps, 120, "ml_train_steps_total to reach the step count") == STEPS
        families = _net.openmetrics(base + "/metrics")
        buckets = [s for s in families["ml_train_step_duration_seconds"].samples if s.name.endswith("_bucket")]
        exemplars = [s.exemplar for s in buckets if s.exemplar is not None]
        slow = [e for e in exemplars if e.value >= 0.5]
        assert len(slow) == 1, exemplars
        trace_id = slow[0].labels["trace_id"]
        view = _net.get_json(f"{base}/slow-steps?trace_id={trace_id}")
        (span,) = view["slow_steps"]
        assert span["name"] == "keras.train_step"
        assert span["attributes"]["ml.step"] == SLOW_STEP
        assert span["span_id"] == slow[0].labels["span_id"]
        labels = next(s.labels for s in families["ml_train_steps"].samples)
        assert labels["ml_run_name"] == "demo_mlp"
        assert (labels["service_name"], labels["ml_worker_type"], labels["ml_worker_index"]) == (
            "trainer",
            "worker",
            "3",
        )
        # The counter can reach its total at the last epoch's flush, just before
        # fit ends and logs its summary: wait for the end of fit, not the counter.
        _net.wait_for(lambda: "fit finished" in (tmp_path / "train.log").read_text(), 60, "the end of fit")
    finally:
        _net.stop(proc)
    log = (tmp_path / "train.log").read_text()
    assert f"trained {STEPS} steps" in log, log
    assert f"step {SLOW_STEP} " in log and trace_id in log


def test_disabling_keras_yields_no_training_metrics(tmp_path) -> None:
    proc, base = _train(tmp_path, {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "keras"})
    log = tmp_path / "train.log"
    try:
        _net.wait_for(lambda: "fit finished" in log.read_text(), 120, "the training to finish")
        status, _, body = _net.get(base + "/metrics")
        assert status == 200  # the endpoint is up: only the Keras instrumentor is off
        assert "ml_train_" not in body
    finally:
        _net.stop(proc)
