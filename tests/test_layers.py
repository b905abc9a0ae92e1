"""The two layers: the instrumentation layer uses the OpenTelemetry API only; only otel_ml/distro touches the SDK.

An instrumentation (Keras, tf.summary, Paddle, GPU, process, serving and
their shared cores) must work under whatever SDK or vendor distro the user
brings, as the contrib instrumentations do, so it may import the
OpenTelemetry API and ``opentelemetry-instrumentation``, never the SDK, an
exporter, a private OpenTelemetry name or otel_ml's distro. The front door
(``otel_ml/__init__.py``) reaches the distro only lazily. The distro layer
installs its batch hand-over into the instrumentation layer on every path
that sets up otel_ml's SDK.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "otel_ml"
FORBIDDEN_PREFIXES = ("opentelemetry.sdk", "opentelemetry.exporter", "otel_ml.distro")


def _instrumentation_modules() -> list[Path]:
    return sorted(
        path
        for path in PACKAGE.rglob("*.py")
        if (PACKAGE / "distro") not in path.parents and path != PACKAGE / "__init__.py"
    )


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, text: str | None = None) -> list[tuple[int, str]]:
    """(line, dotted name) of every module and name ``path`` (or ``text`` as if at ``path``) imports."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text() if text is None else text, str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
        ):
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def _crossing(name: str) -> str | None:
    if name.startswith(FORBIDDEN_PREFIXES):
        return "the distro layer's"
    if name.startswith("opentelemetry.") and any(part.startswith("_") for part in name.split(".")[1:]):
        return "a private OpenTelemetry name"
    return None


def test_the_scan_sees_every_kind_of_import() -> None:
    """The scanner itself: plain, from, relative and dynamic imports all reach the check."""
    source = (
        "import opentelemetry.sdk.metrics\n"
        "from opentelemetry.metrics import _Gauge\n"
        "from ..distro import _sdk\n"
        "import importlib\nimportlib.import_module('opentelemetry.exporter.prometheus')\n"
        "from opentelemetry import trace\n"
        "from opentelemetry.instrumentation.instrumentor import BaseInstrumentor\n"
    )
    names = [name for _, name in _imports(PACKAGE / "keras" / "sample.py", source)]
    assert [name for name in names if _crossing(name)] == [
        "opentelemetry.sdk.metrics",
        "opentelemetry.metrics._Gauge",
        "otel_ml.distro._sdk",
        "opentelemetry.exporter.prometheus",
    ]


def test_no_instrumentation_module_imports_the_sdk_an_exporter_the_distro_or_a_private_name() -> None:
    modules = _instrumentation_modules()
    assert len(modules) > 40 and PACKAGE / "keras" / "__init__.py" in modules
    crossings = [
        f"{path.relative_to(ROOT)}:{line} imports {name} ({why})"
        for path in modules
        for line, name in _imports(path)
        if (why := _crossing(name))
    ]
    assert crossings == []


def test_in_the_distro_only_sdk_internals_imports_private_opentelemetry_names() -> None:
    """Every private dependency in one module a reader can check (otel_ml/distro/_sdk_internals.py)."""
    distro = sorted((PACKAGE / "distro").rglob("*.py"))
    private = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in distro
        for line, name in _imports(path)
        if name.startswith("opentelemetry.") and any(part.startswith("_") for part in name.split(".")[1:])
    ]
    assert private and all(entry.startswith("otel_ml/distro/_sdk_internals.py:") for entry in private), private


_RUNTIME_CHECK = """
import json, sys
import otel_ml
{imports}
print(json.dumps({{
    "sdk": sorted(m for m in sys.modules if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter"))),
    "distro": sorted(m for m in sys.modules if m.startswith("otel_ml.distro")),
    "frameworks": sorted(m for m in ("tensorflow", "keras", "tf_keras", "paddle", "pynvml", "jax", "flask")
                         if m in sys.modules),
}}))
"""


def _fresh(code: str) -> dict[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.slow
def test_importing_every_instrumentation_module_loads_no_sdk_and_no_framework() -> None:
    names = sorted({_module_name(path) for path in _instrumentation_modules()})
    loaded = _fresh(_RUNTIME_CHECK.format(imports="\n".join(f"import {name}" for name in names)))
    assert loaded == {"sdk": [], "distro": [], "frameworks": []}


_ACCELERATED = """
import json, sys
from otel_ml._core import pending
before = pending._accelerator
{action}
from otel_ml.distro._accelerate import record_many_for
print(json.dumps({{"before": before is pending._UNSET, "after": pending._accelerator is record_many_for}}))
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "action",
    [
        "import otel_ml; otel_ml.instrument",
        "from otel_ml.distro.configurator import OtelMLConfigurator",
        "from otel_ml.distro.endpoint import OtelMLPrometheusMetricReader",
        "from otel_ml.distro import gpu_command",
        "from otel_ml.distro import tensorboard_bridge",
        "from otel_ml.distro import cli",
    ],
    ids=["otel_ml.instrument", "configurator", "endpoint", "gpu_command", "tensorboard_bridge", "cli"],
)
def test_every_entry_to_otel_mls_sdk_set_up_installs_the_batch_hand_over(action: str) -> None:
    """The fast path is not imported by the instrumentation layer: the distro plugs it in on every way in."""
    assert _fresh(_ACCELERATED.format(action=action)) == {"before": True, "after": True}


_ON_THEIR_OWN = """
import json, sys
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.metrics import NoOpMeterProvider
from otel_ml._core.pending import record_many_for
sdk = record_many_for(MeterProvider().get_meter("t").create_histogram("h"))
other = record_many_for(NoOpMeterProvider().get_meter("t").create_histogram("h"))
print(json.dumps({"sdk": sdk.__module__, "other": other.__module__, "distro": "otel_ml.distro" in sys.modules}))
"""


@pytest.mark.slow
def test_an_instrumentor_used_on_its_own_finds_the_fast_path_through_its_entry_point() -> None:
    """No ``otel_ml.instrument()``, no configurator: the SDK's instruments still get the batch hand-over."""
    assert _fresh(_ON_THEIR_OWN) == {
        "sdk": "otel_ml.distro._accelerate",
        "other": "otel_ml._core.pending",
        "distro": True,
    }
