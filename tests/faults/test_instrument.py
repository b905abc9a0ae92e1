"""``instrument()`` twice, and with bad environment values: validated, never raising for the environment."""

from __future__ import annotations

import importlib.util
import logging

import pytest

import otel_ml


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("otel_ml")]


def test_options_after_an_earlier_instrument_are_validated_and_named_once(telemetry, caplog) -> None:
    providers = {"meter_provider": telemetry.meter_provider, "tracer_provider": telemetry.tracer_provider}
    otel_ml.instrument(**providers)
    with caplog.at_level(logging.WARNING, logger="otel_ml"):
        otel_ml.instrument(run_name="second", slow_step_factor=3.0, **providers)
        otel_ml.instrument(run_name="second", slow_step_factor=3.0, **providers)  # said once, not twice
    assert warnings(caplog) == [
        "otel_ml: keras, tf_keras are already instrumented, so the option(s) run_name, slow_step_factor were "
        "validated but "
        "not applied; call otel_ml.uninstrument() first, or set them as OTEL_ML_* variables"
    ]
    with pytest.raises(ValueError, match=r"slow_step_factor=0\.5 is invalid: expected a number > 1"):
        otel_ml.instrument(slow_step_factor=0.5, **providers)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_ML_SLOW_STEP_FACTOR", "1e400"),
        ("OTEL_ML_LOSS_SPIKE_WINDOW", "9" * 25),
        ("OTEL_ML_WARMUP_STEPS", "²"),
        ("OTEL_ML_RUN_NAME", "x" * 5000),
        ("OTEL_ML_GPU_ALL_DEVICES", "sometimes?"),
    ],
)
def test_a_bad_variable_never_makes_instrument_raise(telemetry, monkeypatch, caplog, variable, value) -> None:
    monkeypatch.setenv(variable, value)
    with caplog.at_level(logging.ERROR, logger="otel_ml"):
        otel_ml.instrument(meter_provider=telemetry.meter_provider, tracer_provider=telemetry.tracer_provider)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith(f"{variable}=")
    assert "is invalid: expected" in errors[0] and "using the default" in errors[0]


def test_without_otel_mls_metadata_one_error_names_the_fix(monkeypatch, caplog) -> None:
    """A checkout only on sys.path has no entry points: said once, as an error, and nothing raises."""
    from otel_ml.distro import _instrument

    monkeypatch.setattr(_instrument, "_DISTRIBUTION", "otel_ml_not_installed")
    _instrument.entry_points.cache_clear()
    try:
        with caplog.at_level(logging.ERROR, logger="otel_ml"):
            otel_ml.instrument()
            otel_ml.uninstrument()
            otel_ml.instrument()
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == [
            "otel_ml: no instrumentor is known: the otel_ml_not_installed distribution's metadata (its "
            "opentelemetry_instrumentor entry points) is not installed; install otel_ml (from a checkout: "
            "pip install -e .)"
        ]
    finally:
        _instrument.entry_points.cache_clear()


def test_dependencies_name_the_installed_alternative_and_what_is_needed_besides(monkeypatch) -> None:
    """The public check of every supported opentelemetry-instrumentation requires all it is given: we give it one."""
    from importlib.metadata import version

    from otel_ml.tf_summary import TfSummaryInstrumentor

    inst, found = TfSummaryInstrumentor(), f"packaging {version('packaging')}"
    monkeypatch.setattr(TfSummaryInstrumentor, "_instruments_any", ("no-such-tensorflow >= 2", "packaging >= 1"))
    monkeypatch.setattr(TfSummaryInstrumentor, "_instruments_all", ("wrapt >= 1",))
    assert inst.instrumentation_dependencies() == ["packaging >= 1", "wrapt >= 1"]
    assert inst.dependency_conflict() is None
    monkeypatch.setattr(TfSummaryInstrumentor, "_instruments_any", ("no-such-tensorflow >= 2", "packaging >= 999"))
    conflict = inst.dependency_conflict()
    assert conflict is not None and (conflict.required, conflict.found) == ("packaging >= 999", found)
    monkeypatch.setattr(TfSummaryInstrumentor, "_instruments_any", ("no-such-tensorflow >= 2", "no-such-cpu >= 2"))
    assert inst.instrumentation_dependencies() == ["no-such-tensorflow >= 2", "no-such-cpu >= 2", "wrapt >= 1"]
    conflict = inst.dependency_conflict()
    assert conflict is not None and (conflict.required, conflict.found) == ("no-such-tensorflow >= 2", None)


def test_the_patch_record_shares_one_replacement_and_restores_each_name_exactly() -> None:
    import types

    from otel_ml._core.instrumentor import Patches

    def original() -> int:
        return 1

    class Base:
        def method(self) -> int:
            return 2

    source, alias, obj = types.SimpleNamespace(f=original), types.SimpleNamespace(f=original), Base()
    patches = Patches()
    for owner in (source, alias, source):  # twice on one name is harmless
        patches.patch(owner, "f", lambda f: lambda: f() + 10)
    patches.patch(obj, "method", lambda m: lambda: m() + 10)  # only inherited: left alone by default
    patches.patch(obj, "method", lambda m: lambda: m() + 10, inherited=True)
    assert source.f is alias.f and source.f() == 11 and obj.method() == 12
    patches.restore()
    assert source.f is original and alias.f is original
    assert "method" not in vars(obj) and obj.method() == 2
    patches.restore()  # twice is harmless


DISABLED_PROGRAM = """
import json, os, socket, sys, threading
framework, how = sys.argv[1], sys.argv[2]
import otel_ml
if how == "instrument":
    otel_ml.instrument()
if framework == "keras":
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer as owner
    names = ("fit", "evaluate", "predict")
else:
    from paddle.inference import Predictor as owner
    names = ("run", "clone")
import wrapt
def ours(f):  # a wrapt wrapper, or a function whose code is otel_ml's
    code = getattr(f, "__code__", None)
    return isinstance(f, wrapt.FunctionWrapper) or (code is not None and "otel_ml" in code.co_filename)
patched = [n for n in names if ours(owner.__dict__[n])]
with socket.socket() as probe:
    bound = probe.connect_ex(("127.0.0.1", int(os.environ["OTEL_EXPORTER_PROMETHEUS_PORT"]))) == 0
threads = sorted(t.name for t in threading.enumerate() if "otel" in t.name.lower())
print(json.dumps({"patched": patched, "bound": bound, "threads": threads}))
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "framework",
    [
        "keras",
        pytest.param(
            "paddle",
            marks=pytest.mark.skipif(
                importlib.util.find_spec("paddle") is None,
                reason="paddle is not installed in this environment (the oldest-set virtualenv holds TF only)",
            ),
        ),
    ],
)
@pytest.mark.parametrize(("how", "disabled"), [("instrument", "true"), ("auto", " TRUE "), ("instrument", "false")])
def test_otel_sdk_disabled_means_no_patch_no_thread_no_socket(framework, how, disabled) -> None:
    """``OTEL_SDK_DISABLED=true``: otel_ml is off under instrument() and opentelemetry-instrument alike."""
    import json
    import os
    import subprocess
    import sys

    from tests import _net

    env = {
        **os.environ,
        "PYTHONPATH": str(_net.ROOT),
        "OTEL_SDK_DISABLED": disabled,
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(_net.free_port()),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    command = [sys.executable, "-c", DISABLED_PROGRAM, framework, how]
    if how == "auto":
        command = [str(_net.BIN / "opentelemetry-instrument"), *command]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    if disabled.strip().lower() == "true":
        assert facts == {"patched": [], "bound": False, "threads": []}
        assert "otel_ml" not in done.stderr
    else:  # the control: the same checks see otel_ml when it is on
        assert facts["patched"] == (["fit", "evaluate", "predict"] if framework == "keras" else ["run", "clone"])
        assert facts["bound"] is True and "otel_ml-metrics" in facts["threads"]
