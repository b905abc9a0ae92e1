"""Paddle tests: their own pytest process, one tiny real model, helpers to read the telemetry.

Importing paddle after tensorflow crashes the interpreter, so this directory
runs as ``pytest tests/paddle`` and refuses to start in a process that has
already imported tensorflow.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.paddle._helpers import load_example

_SEPARATE = (
    "tests/paddle must run in its own pytest process (pytest tests/paddle): tensorflow is already "
    "imported here and importing paddle after it crashes the interpreter. "
    "Run the other tests with pytest --ignore=tests/paddle."
)
if "tensorflow" in sys.modules:
    raise pytest.UsageError(_SEPARATE)


def pytest_collectstart(collector: pytest.Collector) -> None:
    """Stop before a Paddle test module is imported into a process that already holds tensorflow.

    pytest loads this conftest before it imports any test module, so the check
    above cannot see a tensorflow that another directory's tests import later.
    """
    here = Path(__file__).resolve().parent
    if isinstance(collector, pytest.Module) and here in collector.path.parents and "tensorflow" in sys.modules:
        raise pytest.UsageError(_SEPARATE)


os.environ.setdefault("GLOG_minloglevel", "2")  # Paddle's C++ log lines, not ours
# otel_ml's default (see otel_ml.distro._sdk), set here too because the HTTP conventions are
# chosen once per process and the in-process server tests instrument Flask directly.
os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")


@pytest.fixture(scope="session")
def service_module() -> ModuleType:
    return load_example()


@pytest.fixture(scope="session")
def model_prefix(tmp_path_factory: pytest.TempPathFactory, service_module: ModuleType) -> str:
    """The example's 4-16-3 classifier, saved once with ``paddle.jit.save``."""
    return str(service_module.save_model(str(tmp_path_factory.mktemp("model"))))


@pytest.fixture
def server(telemetry, model_prefix, service_module) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """The example app, instrumented with the test's providers, in a threaded server on a free port."""
    from otel_ml.paddle import PaddleInstrumentor

    telemetry.instrument(PaddleInstrumentor, slow_run_seconds=10.0)
    app = service_module.create_app(
        model_prefix, meter_provider=telemetry.meter_provider, tracer_provider=telemetry.tracer_provider
    )
    srv = service_module.make_threaded_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    srv.app = app
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=10)
