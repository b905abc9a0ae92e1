"""Series shapes as users read them: a real scrape of the embedded /metrics, for each combination the README shows.

Each test runs tests/_series_program.py (``otel_ml.instrument()``, the default
SDK set-up, the endpoint on a free 127.0.0.1 port) in its own process, scrapes
``/metrics`` over HTTP twice (classic text and OpenMetrics, as Prometheus asks),
parses each with prometheus_client's parsers and runs ``promtool check metrics``
on the classic text. Every scrape must hold: one label-key set per family, no
series twice, ``service_name`` on every series. Then each test checks its
program's series: names, label keys and values, one series per fact, exact
figures where the program knows them.

The test running every instrumentor at once also exports through a ``console``
exporter beside the endpoint: its JSON holds each point's attributes as
recorded, so it proves that one metric name is recorded in one scope with one
set of attribute keys across otel_ml (rule 1 of docs/metric-names.md), and that
stderr carries no SDK warning.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests import _net
from tests._scrape import CONDITIONAL_KEYS, check_scrape, recorded_key_sets

pytestmark = pytest.mark.slow

PROGRAM = _net.ROOT / "tests" / "_series_program.py"
STEPS = 8  # tests/_series_program.py: 2 epochs of 64 samples in batches of 16
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
TRAIN_KEYS = {"ml_framework", "ml_model_name", "ml_run_name", "ml_phase"}
SDK_WARNING = re.compile(r"^LOG (opentelemetry\S*|otel_ml\S*) (WARNING|ERROR|CRITICAL) ", re.M)


@dataclass
class Scrape:
    """What one run of the program served, and what it said."""

    text: str
    facts: dict[str, Any]
    families: dict[str, Any] = field(default_factory=dict)
    stderr: str = ""
    stdout: str = ""

    def series(self, name: str, **labels: str) -> dict[tuple[tuple[str, str], ...], float]:
        """Samples of ``name`` whose labels include ``labels``: their own labels (sorted, no resource's) -> value."""
        found = {}
        for family in self.families.values():
            for sample in family.samples:
                if sample.name != name or any(sample.labels.get(k) != v for k, v in labels.items()):
                    continue
                own = {k: v for k, v in sample.labels.items() if not k.startswith(("otel_scope_", "service_"))}
                key = tuple(sorted(own.items()))
                assert key not in found, f"{name} series twice: {key}"
                found[key] = sample.value
        return found

    def one(self, name: str, **labels: str) -> float:
        found = self.series(name, **labels)
        assert len(found) == 1, (name, labels, found)
        return next(iter(found.values()))


@contextmanager
def program(tmp_path: Path, *parts: str, env: dict[str, str] | None = None) -> Iterator[Scrape]:
    """Run tests/_series_program.py with ``parts``; yield its scrape once it is READY; stop it and keep its output."""
    port = _net.free_port()
    stdout, stderr = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    full_env = {
        **os.environ,
        "PYTHONPATH": str(_net.ROOT),
        "PYTHONUNBUFFERED": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
        "OTEL_SERVICE_NAME": "shapes",
        # Runs named relative to the program's logdir root, whatever the working directory.
        "OTEL_ML_TF_SUMMARY_LOGDIR_ROOT": str(tmp_path / "logs"),
        **(env or {}),
    }
    if "OTEL_ML_GPU_NVML_MODULE" in full_env:
        full_env.pop("CUDA_VISIBLE_DEVICES", None)  # tests/conftest.py hides GPUs; the fake NVML shows two
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(PROGRAM), str(tmp_path), *parts],
            cwd=_net.ROOT,
            env=full_env,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    try:

        def ready() -> str | None:
            assert proc.poll() is None, f"the program exited: {stderr.read_text()[-3000:]}"
            line = next((x for x in stdout.read_text().splitlines() if x.startswith("READY ")), None)
            return line

        facts = json.loads(_net.wait_for(ready, 240, "the program to be READY").removeprefix("READY "))
        base = f"http://127.0.0.1:{port}/metrics"
        status, _, text = _net.get(base)
        assert status == 200
        status, content_type, openmetrics = _net.get(base, accept=OPENMETRICS)
        assert status == 200 and content_type.startswith("application/openmetrics-text"), content_type
        scrape = Scrape(text, facts, check_scrape(text, openmetrics))
        yield scrape
        (tmp_path / "stop").touch()
        proc.wait(60)
        assert proc.returncode == 0, stderr.read_text()[-3000:]
        scrape.stdout, scrape.stderr = stdout.read_text(), stderr.read_text()
    finally:
        (tmp_path / "stop").touch()
        _net.stop(proc)


def _label_keys(scrape: Scrape, name: str) -> set[str]:
    return {k for key in scrape.series(name) for k, _ in key}


# --- the combinations the README shows -------------------------------------------------------


def test_keras_fit_alone(tmp_path: Path) -> None:
    with program(tmp_path, "keras") as scrape:
        history = scrape.facts["keras"]
        run = {"ml_framework": "keras", "ml_model_name": "shapes_mlp", "ml_run_name": "shapes"}
        losses = scrape.series("ml_train_loss")
        assert {dict(k)["ml_phase"] for k in losses} == {"train", "validation"}
        assert all(dict(k).items() >= run.items() for k in losses)
        assert _label_keys(scrape, "ml_train_loss") == TRAIN_KEYS
        assert scrape.one("ml_train_loss", ml_phase="validation") == pytest.approx(history["val_loss"][-1], rel=1e-6)
        assert scrape.one("ml_train_metric", ml_metric_name="mae", ml_phase="train") == pytest.approx(
            history["mae"][-1], rel=1e-6
        )
        assert scrape.one("ml_train_metric", ml_metric_name="mae", ml_phase="validation") == pytest.approx(
            history["val_mae"][-1], rel=1e-6
        )
        assert scrape.one("ml_train_steps_total", **run) == STEPS
        assert scrape.one("ml_train_samples_total", **run) == 2 * 64
        assert scrape.one("ml_train_epochs_total", **run) == 2
        assert scrape.one("ml_train_learning_rate", ml_optimizer_name="optimizer", **run) == pytest.approx(0.01)
        assert scrape.series("ml_train_anomalies_total") == {}
        assert not [n for n in scrape.families if n.startswith("ml_tensorboard")]


def test_keras_with_its_tensorboard_callback_and_tf_summary_is_one_series_per_fact(tmp_path: Path) -> None:
    with program(tmp_path, "keras", "tensorboard") as scrape:
        history = scrape.facts["keras"]
        # One fit, one train loss: the callback's epoch_loss stays in ml.tensorboard.* (docs/tf_summary.md).
        losses = scrape.series("ml_train_loss")
        assert sorted(dict(k)["ml_phase"] for k in losses) == ["train", "validation"]
        for name in ("ml_train_loss", "ml_train_metric", "ml_train_learning_rate"):
            assert {dict(k)["ml_framework"] for k in scrape.series(name)} == {"keras"}, name
            assert {dict(k)["ml_run_name"] for k in scrape.series(name)} == {"shapes"}, name
        assert scrape.one("ml_train_loss", ml_phase="validation") == pytest.approx(history["val_loss"][-1], rel=1e-6)
        # ... where the callback's values are, exactly as written.
        tb = {"ml_run_name": "fit/train", "ml_summary_tag": "epoch_loss"}
        assert scrape.one("ml_tensorboard_scalar", **tb) == pytest.approx(history["loss"][-1], rel=1e-6)
        assert scrape.one("ml_tensorboard_writes_total", ml_summary_kind="scalar", **tb) == 2
        val = {"ml_run_name": "fit/validation", "ml_summary_tag": "epoch_loss"}
        assert scrape.one("ml_tensorboard_scalar", **val) == pytest.approx(history["val_loss"][-1], rel=1e-6)
        lr = {"ml_run_name": "fit/train", "ml_summary_tag": "epoch_learning_rate"}
        assert scrape.one("ml_tensorboard_scalar", **lr) == pytest.approx(0.01)
    assert not SDK_WARNING.findall(scrape.stderr), scrape.stderr[-3000:]


def test_tf_summary_program_guide_hparams_and_pytorch_tags(tmp_path: Path) -> None:
    with program(tmp_path, "tf_summary") as scrape:
        tf_run = {"ml_framework": "tf_summary", "ml_model_name": "unknown"}
        losses = {(dict(k)["ml_run_name"], dict(k)["ml_phase"]): v for k, v in scrape.series("ml_train_loss").items()}
        assert losses == {
            ("gradient_tape/train", "train"): pytest.approx(1 / 3, rel=1e-6),
            ("gradient_tape/test", "test"): pytest.approx(2 / 3, rel=1e-6),
            ("torch_style", "train"): 1.25,  # PyTorch's Loss/train
        }
        metrics = {
            (dict(k)["ml_run_name"], dict(k)["ml_phase"], dict(k)["ml_metric_name"]): v
            for k, v in scrape.series("ml_train_metric", **tf_run).items()
        }
        assert metrics == {
            ("gradient_tape/train", "train", "accuracy"): pytest.approx(0.7, rel=1e-6),
            ("gradient_tape/test", "test", "accuracy"): pytest.approx(0.6, rel=1e-6),
            ("hparam_tuning/run-0", "unknown", "accuracy"): 0.875,  # nothing names a phase: not "train"
            ("torch_style", "test", "accuracy"): 0.375,  # PyTorch's Accuracy/test
        }
        # The Keras path's label keys exactly: one key set per name, whichever path records it.
        assert _label_keys(scrape, "ml_train_loss") == TRAIN_KEYS
        assert _label_keys(scrape, "ml_train_metric") == TRAIN_KEYS | {"ml_metric_name"}
        assert scrape.one("ml_tensorboard_writes_total", ml_run_name="torch_style", ml_summary_tag="Loss/train") == 4
        assert scrape.one("ml_tensorboard_step", ml_run_name="gradient_tape/train") == 2
        assert scrape.series("ml_train_anomalies_total") == {}


def test_gpu_fake_and_keras(tmp_path: Path) -> None:
    with program(tmp_path, "keras", env={"OTEL_ML_GPU_NVML_MODULE": "tests.fake_nvml"}) as scrape:
        gpus = {
            "GPU-00000000-1111-2222-3333-444444444444": "gpu0",
            "GPU-99999999-8888-7777-6666-555555555555": "gpu1",
        }
        for name in ("hw_gpu_utilization", "hw_gpu_memory_usage_bytes", "hw_power_watts", "hw_gpu_info"):
            found = scrape.series(name)
            assert {dict(k)["hw_id"]: dict(k)["hw_name"] for k in found} == gpus, name
        assert scrape.one("hw_power_watts", hw_id="GPU-99999999-8888-7777-6666-555555555555") == 250.5
        assert scrape.one("ml_train_steps_total", ml_run_name="shapes") == STEPS


def test_serving_request_path(tmp_path: Path) -> None:
    with program(tmp_path, "serving") as scrape:
        assert scrape.facts["serving"]["statuses"] == [200, 200, 400, 500]
        counts = {
            (dict(k)["http_route"], dict(k)["http_response_status_code"], dict(k).get("error_type", "")): v
            for k, v in scrape.series("http_server_request_duration_seconds_count").items()
        }
        assert counts == {
            ("/predict/<int:label>", "200", ""): 2,
            ("/predict/<int:label>", "400", ""): 1,  # a client error is no server error
            ("/fail", "500", "500"): 1,
        }
        assert scrape.one("ml_inference_queue_duration_seconds_count", ml_model_name="shapes_model") == 2
        predictions = scrape.series("ml_model_predictions_total", ml_model_name="shapes_model")
        assert sorted((dict(k)["ml_prediction_label"], v) for k, v in predictions.items()) == [
            ("0", 1),
            ("1", 1),
            ("_OTHER", 0),
        ]  # every declared series from 0


# --- everything at once: one scope and one key set per name, and a quiet stderr -------------------


# Every metric otel_ml declares is recorded by the all-at-once program, but these (each tested elsewhere).
NOT_RECORDED_HERE = {
    "ml.inference.duration": "Paddle: never in a process with TensorFlow (tests/paddle)",
    "ml.inference.batch.size": "Paddle (tests/paddle)",
    "ml.inference.active": "Paddle (tests/paddle)",
    "ml.model.load.duration": "Paddle (tests/paddle)",
    "ml.tensorboard.bridge.events": "the bridge's own process (tests/test_tensorboard_bridge.py)",
    "ml.tensorboard.bridge.bad_files": "the bridge's own process (tests/test_tensorboard_bridge.py)",
    "ml.tensorboard.bridge.pending": "the bridge's own process (tests/faults/test_bridge_faults.py)",
    "hw.gpu.xid.errors": "needs an XID event from NVML (tests/test_gpu_xid.py)",
    "ml.gpu.process.utilization": "needs per-process samples from NVML (tests/test_gpu_signals.py)",
    "ml.gpu.process.memory.usage": "needs this process among the fake's GPU processes (tests/test_gpu_signals.py)",
}


def _declared_metrics() -> set[str]:
    from otel_ml._core import semconv

    return {value for name, value in vars(semconv).items() if name.startswith("METRIC_")}


def test_every_instrumentor_at_once_one_scope_one_key_set_per_name_and_no_sdk_warning(tmp_path: Path) -> None:
    parts = ("keras", "tensorboard", "tf_keras", "tf_summary", "nan", "serving")
    env = {
        "OTEL_ML_TF_SUMMARY_MAX_TAGS": "4",  # logs/many writes 8: ml.tensorboard.dropped is recorded too
        "OTEL_ML_GPU_NVML_MODULE": "tests.fake_nvml",
        "OTEL_METRICS_EXPORTER": "otel_ml_prometheus,console",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",  # so that a console export happens while the GPU is polled
    }
    with program(tmp_path, *parts, env=env) as scrape:
        # Both Kerases and tf.summary write ml_train_loss: one train series per fit, each path's own.
        trains = {dict(k)["ml_run_name"] for k in scrape.series("ml_train_loss", ml_phase="train")}
        assert trains == {"shapes", "shapes2", "gradient_tape/train", "torch_style", "shapes_nan", "nan_tape/train"}
        stdout = tmp_path / "stdout.txt"
        _net.wait_for(lambda: '"name": "hw.power"' in stdout.read_text(), 30, "a console export with the GPU's")
    recorded = recorded_key_sets(scrape.stdout)
    ours = {name: scopes for name, scopes in recorded.items() if name.startswith(("ml.", "hw.", "http."))}
    # Every family of the combination was recorded (the check below is over real recordings).
    for name in ("ml.train.loss", "ml.train.metric", "ml.train.learning_rate", "ml.tensorboard.scalar", "hw.power"):
        assert name in ours, sorted(ours)
    # "Every instrument otel_ml creates": all declared names were recorded here, but the few listed.
    assert _declared_metrics() - set(recorded) == set(NOT_RECORDED_HERE), _declared_metrics() - set(recorded)
    # Both paths counted a NaN loss, with the same keys (checked below with every other name).
    kinds = {dict(k)["ml_framework"] for k in scrape.series("ml_train_anomalies_total", ml_anomaly_kind="nan_loss")}
    assert kinds == {"keras", "tf_summary"}
    for name, scopes in ours.items():
        assert len(scopes) == 1, f"{name} recorded in several scopes: {sorted(scopes)}"
        (key_sets,) = scopes.values()
        assert len({keys - CONDITIONAL_KEYS for keys in key_sets}) == 1, f"{name}: {key_sets}"
    assert list(recorded["ml.train.loss"]) == ["otel_ml.training"]
    assert recorded["ml.train.loss"]["otel_ml.training"] == {frozenset(k.replace("_", ".") for k in TRAIN_KEYS)}
    # error.type is there on the failed request only: the conditional key is real, not hypothetical.
    assert len(recorded["http.server.request.duration"]["otel_ml.serving"]) == 2
    # stderr: no SDK warning at all; otel_ml's own lines are exactly the two this program provokes.
    sdk = re.findall(r"^LOG opentelemetry\S* (?:WARNING|ERROR|CRITICAL) .*$", scrape.stderr, re.M)
    assert sdk == [], sdk
    assert "conflicting metrics identities" not in scrape.stderr
    own = re.findall(r"^LOG (otel_ml\S*) (WARNING|ERROR|CRITICAL) otel_ml: (.{30})", scrape.stderr, re.M)
    assert sorted(own) == [
        ("otel_ml._summary._export", "WARNING", "run 'many' wrote more than 4 d"),
        ("otel_ml._training.fit", "WARNING", "nan_loss at step 1 of run 'sha"),
    ], own
