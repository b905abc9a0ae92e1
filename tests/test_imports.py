"""otel_ml never imports a framework itself: not on import, not from an entry point, not when instrumenting.

Importing paddle after tensorflow crashes the interpreter, so an import of ours
could kill a Paddle service that never asked for TensorFlow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FRAMEWORKS = ("tensorflow", "keras", "tf_keras", "paddle", "pynvml")

CODE = """
import sys
from importlib.metadata import entry_points
import otel_ml, otel_ml.distro.cli, otel_ml.distro.configurator
for group in ("opentelemetry_instrumentor", "opentelemetry_configurator", "opentelemetry_metrics_exporter"):
    for ep in entry_points(group=group):
        if ep.value.startswith("otel_ml"):
            ep.load()
print(sorted(m for m in %r if m in sys.modules))
otel_ml.instrument()  # the GPU instrumentor imports pynvml now, by design; no ML framework
otel_ml.uninstrument()
otel_ml.instrument()
print(sorted(m for m in %r if m in sys.modules))
"""


def test_instrumenting_imports_no_framework() -> None:
    env = {**os.environ, "OTEL_EXPORTER_PROMETHEUS_PORT": "0", "OTEL_TRACES_EXPORTER": "none"}
    env.pop("OTEL_METRICS_EXPORTER", None)
    out = subprocess.run(
        [sys.executable, "-c", CODE % (FRAMEWORKS, FRAMEWORKS[:-1])],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout.strip().splitlines()[-2:] == ["[]", "[]"], out.stderr


def test_every_instrumentor_is_an_entry_point_exported_by_otel_ml() -> None:
    """The list is kept once, as the entry points that opentelemetry-instrument reads; the composer reads them too."""
    import tomllib

    import otel_ml
    from otel_ml.distro._instrument import _instrumentors

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    targets = declared["opentelemetry_instrumentor"]
    composed = _instrumentors()
    assert {name: f"{type(inst).__module__}:{type(inst).__name__}" for name, inst in composed.items()} == targets
    exported = {name for name in otel_ml.__all__ if name.endswith("Instrumentor")}
    assert exported == {type(inst).__name__ for inst in composed.values()}
    assert all(getattr(otel_ml, type(inst).__name__) is type(inst) for inst in composed.values())
