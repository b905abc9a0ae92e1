"""Which model a predictor serves: names from real export layouts, versions, names from code, load time."""

from __future__ import annotations

import gc
import shutil
from pathlib import Path

import paddle.inference as pi
import pytest

import otel_ml
from otel_ml._core import semconv as sc
from otel_ml.paddle import PaddleInstrumentor, set_model
from otel_ml.paddle._identity import identity_of_path
from tests.paddle._helpers import new_predictor, run_zero_copy


def _instrument(telemetry, **options) -> None:  # type: ignore[no-untyped-def]
    options.setdefault("slow_run_seconds", 10.0)
    telemetry.instrument(PaddleInstrumentor, **options)


def _export(model_prefix: str, target: Path) -> pi.Config:
    """The test model copied to ``target`` (a path without suffix), as exporters lay it out."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for suffix in (".json", ".pdiparams"):
        shutil.copy(model_prefix + suffix, str(target) + suffix)
    config = pi.Config(str(target) + ".json", str(target) + ".pdiparams")
    config.disable_glog_info()
    return config


def _series(telemetry, name: str) -> dict[tuple[str, str | None], int]:  # type: ignore[no-untyped-def]
    """(model name, version) -> count, over every point of histogram ``name``."""
    found: dict[tuple[str, str | None], int] = {}
    for point in telemetry.points(name):
        attrs = dict(point.attributes)
        key = (attrs[sc.ML_MODEL_NAME], attrs.get(sc.ML_MODEL_VERSION))
        found[key] = found.get(key, 0) + point.count
    return found


@pytest.mark.parametrize(
    ("path", "is_file", "expected"),
    [
        ("/srv/ocr_det/inference.json", True, ("ocr_det", None)),
        ("/srv/ocr_rec/inference.pdmodel", True, ("ocr_rec", None)),
        ("/srv/x/__model__", True, ("x", None)),
        ("/models/resnet/1/model.json", True, ("resnet", "1")),
        ("/models/resnet/12/resnet50.json", True, ("resnet", "12")),
        ("/srv/iris_mlp.json", True, ("iris_mlp", None)),
        ("/models/bert/3", False, ("bert", "3")),
        ("/models/bert", False, ("bert", None)),
        ("model.json", True, ("model", None)),
        # Version directories under a directory that names the model (issue 23).
        ("/srv/ocr_det/v2/inference.json", True, ("ocr_det", "v2")),
        ("/srv/ocr_det/1.2.0/inference.json", True, ("ocr_det", "1.2.0")),
        ("/srv/ocr_det/2.0.1-rc1/inference.pdmodel", True, ("ocr_det", "2.0.1-rc1")),
        ("/models/bert/V3", False, ("bert", "V3")),
        ("/srv/v2/inference.json", True, ("srv", "v2")),
        ("/srv/version2/inference.json", True, ("version2", None)),
        ("/srv/1.2.x/inference.json", True, ("1.2.x", None)),
    ],
)
def test_names_and_versions_from_paths(path: str, is_file: bool, expected: tuple[str, str | None]) -> None:
    assert identity_of_path(path, is_file) == expected


def test_generic_stems_and_triton_versions_do_not_collide(telemetry, model_prefix, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _instrument(telemetry, inference_warmup_runs=0)
    layouts = {
        ("ocr_det", None): tmp_path / "ocr_det" / "inference",
        ("ocr_rec", None): tmp_path / "ocr_rec" / "inference",
        ("resnet", "1"): tmp_path / "repo" / "resnet" / "1" / "model",
        ("resnet", "2"): tmp_path / "repo" / "resnet" / "2" / "model",
    }
    for runs, target in enumerate(layouts.values(), start=1):
        predictor = pi.create_predictor(_export(model_prefix, target))
        for _ in range(runs):
            run_zero_copy(predictor, 1)
    assert _series(telemetry, sc.METRIC_INFERENCE_DURATION) == {key: n for n, key in enumerate(layouts, start=1)}
    assert _series(telemetry, sc.METRIC_MODEL_LOAD_DURATION) == dict.fromkeys(layouts, 1)
    tracer = telemetry.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("request"):
        run_zero_copy(predictor, 1)
    [span] = telemetry.finished(sc.SPAN_PADDLE_RUN)
    assert (span.attributes[sc.ML_MODEL_NAME], span.attributes[sc.ML_MODEL_VERSION]) == ("resnet", "2")


def test_names_from_code_beat_the_path_and_the_option(telemetry, model_prefix, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _instrument(telemetry, inference_warmup_runs=0, model_name="from_option")
    config = _export(model_prefix, tmp_path / "m" / "inference")
    set_model(config, "detector", version=7)
    by_config = pi.create_predictor(config)
    clone = by_config.clone()
    other = pi.create_predictor(_export(model_prefix, tmp_path / "n" / "inference"))
    set_model(other, "recognizer", "2026-11")
    for predictor in (by_config, clone, other):
        run_zero_copy(predictor, 1)
    assert _series(telemetry, sc.METRIC_INFERENCE_DURATION) == {("detector", "7"): 2, ("recognizer", "2026-11"): 1}
    # Loads: the config's name for the predictor and its clone; "other" was loaded under the option's name.
    assert _series(telemetry, sc.METRIC_MODEL_LOAD_DURATION) == {("detector", "7"): 2, ("from_option", None): 1}


@pytest.mark.parametrize(
    ("name", "version", "message"),
    [
        ("", None, "model name '' is invalid: expected a non-empty string of at most 128"),
        ("x" * 129, None, "expected a non-empty string of at most 128"),
        ("ok", "v" * 65, "expected a non-empty string of at most 64"),
        ("ok", 1.5, "model version 1.5 is invalid: expected a string, a whole number or None"),
    ],
)
def test_bad_names_are_refused_with_what_is_accepted(model_prefix, name, version, message) -> None:  # type: ignore[no-untyped-def]
    config = pi.Config(model_prefix + ".json", model_prefix + ".pdiparams")
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        set_model(config, name, version)
    with pytest.raises(TypeError, match=r"expected a paddle\.inference\.Predictor or Config"):
        set_model(42, "ok")


def test_a_live_predictor_keeps_its_name_and_warm_up_across_reinstrumenting(telemetry, model_prefix, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _instrument(telemetry, inference_warmup_runs=1)
    predictor = pi.create_predictor(_export(model_prefix, tmp_path / "ocr" / "1" / "inference"))
    run_zero_copy(predictor, 1)  # its warm-up run
    otel_ml.uninstrument()
    _instrument(telemetry, inference_warmup_runs=1)
    run_zero_copy(predictor, 1)
    points = {
        (dict(p.attributes)[sc.ML_MODEL_NAME], dict(p.attributes)[sc.ML_INFERENCE_WARMUP]): p.count
        for p in telemetry.points(sc.METRIC_INFERENCE_DURATION)
    }
    assert points == {("ocr", True): 1, ("ocr", False): 1}


def test_a_failed_load_is_timed_with_its_error_type_and_reaches_the_caller(telemetry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "broken" / "3").mkdir(parents=True)
    for name in ("model.json", "model.pdiparams"):
        (tmp_path / "broken" / "3" / name).write_text("not a model")
    files = (str(tmp_path / "broken/3/model.json"), str(tmp_path / "broken/3/model.pdiparams"))
    with pytest.raises(RuntimeError) as plain:
        pi.create_predictor(pi.Config(*files))
    _instrument(telemetry)
    with pytest.raises(RuntimeError) as instrumented:
        pi.create_predictor(pi.Config(*files))  # a config serves one predictor, even a failed one
    assert str(instrumented.value) == str(plain.value)
    [point] = telemetry.points(sc.METRIC_MODEL_LOAD_DURATION)
    assert dict(point.attributes) == {
        sc.ML_FRAMEWORK: "paddle",
        sc.ML_MODEL_NAME: "broken",
        sc.ML_MODEL_VERSION: "3",
        sc.ERROR_TYPE: "RuntimeError",
    }
    assert point.count == 1


def test_a_predictor_that_dies_takes_its_facts_with_it(telemetry, model_prefix) -> None:  # type: ignore[no-untyped-def]
    """Facts are keyed by address: a new predictor, even at a dead one's address, starts afresh."""
    _instrument(telemetry, inference_warmup_runs=1)
    registry = PaddleInstrumentor()._hooks.registry  # type: ignore[union-attr]
    for _ in range(3):
        predictor = new_predictor(model_prefix)
        run_zero_copy(predictor, 1)
        run_zero_copy(predictor, 1)
        del predictor
        gc.collect()
        assert registry._facts == {}
    durations = telemetry.points_by(sc.METRIC_INFERENCE_DURATION)
    warm = {dict(key)[sc.ML_INFERENCE_WARMUP]: point.count for key, point in durations.items()}
    assert warm == {True: 3, False: 3}  # each warmed up on its own
