"""The corpus in tests/programs/: programs written as users write them, run plain and instrumented.

Both runs happen in subprocesses (the instrumented one under
``opentelemetry-instrument`` with the embedded endpoint), all programs in one
process each so TensorFlow is imported twice in all. Each program records
its own true figures (optimizer iterations, the loss of the last batch
computed independently, learning rates); the instrumented process scrapes
its own ``/metrics`` at the end.

Every test runs once per Keras backend, with the same assertions: on
TensorFlow every program but ``jax_*.py``; under ``KERAS_BACKEND=jax`` every
program that can run there (not the custom ``train_step``s and the GAN
written with ``tf.GradientTape``; ``jax_custom_step.py`` writes both guide
patterns the JAX way instead); on Keras 2 (``tf_keras``, chosen by
``CORPUS_KERAS``) the programs written for both Kerases (they take ``keras``
from ``_truth``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import _net

pytestmark = pytest.mark.slow

_DIR = _net.ROOT / "tests" / "programs"
PROGRAMS = sorted(p for p in _DIR.glob("[a-z]*.py") if p.name != "run.py" and not p.name.startswith("jax_"))
MODELS = [
    "convnet", "custom_own", "custom_tracker", "gan", "pydataset", "generator", "lr_scheduler",
    "early_stopping", "plateau", "schedule", "multi_io", "seeded_first", "seeded_second",
    "spe_known", "spe_unknown", "text",
    "endpoint_functional", "endpoint_subclassed", "endpoint_tf_data", "guide_endpoint", "steps_per_epoch_arrays",
    "probed_main", "probe",
]  # fmt: skip
# Backend -> (programs, the models they train). JAX leaves out the programs written for TensorFlow's
# train_step(data) with tf.GradientTape (custom_step_*.py, gan.py); jax_custom_step.py is their JAX form.
JAX_PROGRAMS = [
    "convnet_classifier.py", "multi_io.py", "lr_callbacks.py", "seeded_two_fits.py", "generators.py",
    "steps_per_execution.py", "text_model.py", "jax_custom_step.py", "nested_fit.py",
]  # fmt: skip
# The endpoint-layer programs note each batch's loss in eager Python, which JAX's traced step does not allow.
EAGER_NOTES = [
    "endpoint_functional",
    "endpoint_subclassed",
    "endpoint_tf_data",
    "guide_endpoint",
    "steps_per_epoch_arrays",
]
JAX_MODELS = [m for m in MODELS if m not in ("custom_own", "custom_tracker", "gan", *EAGER_NOTES)]
JAX_MODELS += ["jax_custom_tracker", "jax_custom_own"]
# Keras 2: the programs written for both Kerases (issue 25's edges: add_loss only, steps_per_epoch, a fit in a fit).
KERAS_2_PROGRAMS = ["endpoint_layer.py", "builtin_methods.py", "nested_fit.py"]
KERAS_2_MODELS = [*EAGER_NOTES, "probed_main", "probe"]
BACKENDS = {
    "tensorflow": (PROGRAMS, MODELS),
    "jax": ([_DIR / p for p in JAX_PROGRAMS], JAX_MODELS),
    "tf_keras": ([_DIR / p for p in KERAS_2_PROGRAMS], KERAS_2_MODELS),
}
CASES = [(backend, model) for backend, (_, models) in BACKENDS.items() for model in models]


@dataclass
class Corpus:
    backend: str
    plain: subprocess.CompletedProcess[str]
    instrumented: subprocess.CompletedProcess[str]
    truth: dict[str, dict[str, Any]]
    families: dict[str, Any]

    def values(self, family: str, model: str, **labels: str) -> dict[tuple[tuple[str, str], ...], float]:
        found = {}
        for sample in self.families[family].samples if family in self.families else ():
            if sample.name.endswith("_created") or sample.labels.get("ml_model_name") != model:
                continue
            if all(sample.labels.get(k) == v for k, v in labels.items()):
                found[
                    tuple(
                        sorted(
                            (k, v)
                            for k, v in sample.labels.items()
                            if k in ("ml_phase", "ml_optimizer_name", "ml_anomaly_kind")
                        )
                    )
                ] = sample.value
        return found


def _run(tmp: Path, instrumented: bool, backend: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(_net.ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    env.update(KERAS_BACKEND="tensorflow" if backend == "tf_keras" else backend, JAX_PLATFORMS="cpu")
    if backend == "tf_keras":
        env["CORPUS_KERAS"] = "tf_keras"
    args = [sys.executable, str(_DIR / "run.py"), *map(str, BACKENDS[backend][0])]
    if instrumented:
        env.update(
            OTEL_EXPORTER_PROMETHEUS_PORT=str(_net.free_port()),
            CORPUS_METRICS=str(tmp / "metrics.txt"),
            CORPUS_TRUTH=str(tmp / "truth.jsonl"),
        )
        args = [str(Path(sys.executable).parent / "opentelemetry-instrument"), *args]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp)


_CORPORA: dict[str, Corpus] = {}


@pytest.fixture(scope="module", params=list(BACKENDS))
def corpus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """Each backend's corpus runs once: pytest may interleave the backends' tests, so it is kept."""
    backend = request.param
    if backend not in _CORPORA:
        _CORPORA[backend] = _run_corpus(backend, tmp_path_factory.mktemp(f"corpus-{backend}"))
    return _CORPORA[backend]


def _run_corpus(backend: str, tmp: Path) -> Corpus:
    procs = {kind: _run(tmp, kind == "instrumented", backend) for kind in ("plain", "instrumented")}
    done = {}
    for kind, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        done[kind] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert done["plain"].returncode == 0, done["plain"].stderr[-3000:]
    assert done["instrumented"].returncode == 0, done["instrumented"].stderr[-3000:]
    truth = {e["model"]: e for e in map(json.loads, (tmp / "truth.jsonl").read_text().splitlines())}
    families = {f.name: f for f in text_string_to_metric_families((tmp / "metrics.txt").read_text())}
    return Corpus(backend, done["plain"], done["instrumented"], truth, families)


def test_every_program_ran_and_recorded(corpus: Corpus) -> None:
    assert sorted(corpus.truth) == sorted(BACKENDS[corpus.backend][1])
    assert f"keras backend {corpus.backend}" in corpus.plain.stdout


def test_results_and_stdout_are_identical_to_the_plain_run(corpus: Corpus) -> None:
    """Seeded programs (two fits, a model built between them) print weights, losses and random draws."""
    assert corpus.instrumented.stdout == corpus.plain.stdout
    assert ("seeded random" in corpus.plain.stdout) == (corpus.backend != "tf_keras")


def test_nothing_from_otel_ml_on_stderr(corpus: Corpus) -> None:
    assert not re.findall(r".*otel_ml.*", corpus.instrumented.stderr)


@pytest.mark.parametrize(("corpus", "model"), CASES, indirect=["corpus"])
def test_exact_figures(corpus: Corpus, model: str) -> None:
    truth = corpus.truth[model]
    steps = set(truth["steps"].values())
    assert len(steps) == 1, truth  # every optimizer steps once per train_step
    assert corpus.values("ml_train_steps", model) == {(): steps.pop()}
    assert corpus.values("ml_train_epochs", model) == {(): truth["epochs"]}
    samples = corpus.values("ml_train_samples", model)
    assert samples == ({(): truth["samples"]} if truth["samples_counted"] else {})
    losses = corpus.values("ml_train_loss", model, ml_phase="train")
    if truth["last_loss"] is None and model == "gan":
        assert losses == {}, "no 'loss' in the logs: no loss, never an invented one"
    elif truth["last_loss"] is not None:
        assert losses == {(("ml_phase", "train"),): pytest.approx(truth["last_loss"], rel=2e-5)}
    rates = corpus.values("ml_train_learning_rate", model)
    assert rates == {(("ml_optimizer_name", name),): pytest.approx(lr) for name, lr in truth["learning_rates"].items()}
    assert corpus.values("ml_train_anomalies", model) == {}, "healthy runs have no anomaly"
