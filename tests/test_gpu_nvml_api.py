"""The fake NVML must not drift from the real one: every name, signature, constant and struct field checked.

``pynvml`` (nvidia-ml-py) imports without a GPU, so its functions, constants
and ctypes structs can be inspected here. Every ``nvml*`` call that otel_ml
makes must bind to the real function's signature with the same number of
arguments; every function and constant of the fake must exist in pynvml with
the same parameters and value; and what the fake returns must carry the
fields of the struct the real call returns.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from tests import _fake_nvml_constants, fake_nvml

pynvml = pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed (the gpu extra)")

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "otel_ml" / "gpu").glob("*.py"))
NAME = re.compile(r"^(nvml\w+|NVML_\w+|c_nvml\w+|NVMLError\w*)$")


def _calls() -> list[tuple[str, int, str]]:
    """(function, positional argument count, where) for every ``nvml.nvml*(...)`` call in otel_ml."""
    found = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                owner, attr = node.func.value, node.func.attr
                if isinstance(owner, ast.Name) and owner.id == "nvml" and attr.startswith("nvml"):
                    found.append((attr, len(node.args), f"{path.name}:{node.lineno}"))
    return found


def _names_used() -> set[str]:
    """Every pynvml name otel_ml refers to: ``nvml.X`` attributes and ``"X"`` string literals."""
    names = set()
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "nvml":
                names.add(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and NAME.match(node.value):
                names.add(node.value)
    return {n for n in names if NAME.match(n)}


def test_otel_ml_uses_only_names_pynvml_has() -> None:
    used = _names_used()
    assert len(used) > 60  # the parse found the calls, constants and error classes
    assert sorted(n for n in used if not hasattr(pynvml, n)) == []


@pytest.mark.parametrize(("function", "args", "where"), _calls(), ids=lambda v: str(v))
def test_every_call_binds_to_the_real_signature(function: str, args: int, where: str) -> None:
    inspect.signature(getattr(pynvml, function)).bind(*range(args))


def _fake_functions() -> list[str]:
    return sorted(n for n, v in vars(fake_nvml).items() if n.startswith("nvml") and inspect.isfunction(v))


@pytest.mark.parametrize("function", _fake_functions())
def test_every_fake_function_has_the_real_parameters(function: str) -> None:
    real = [p.name for p in inspect.signature(getattr(pynvml, function)).parameters.values()]
    fake = [p.name for p in inspect.signature(getattr(fake_nvml, function)).parameters.values()]
    assert fake == real, f"{function}: fake {fake}, pynvml {real}"


def test_every_fake_constant_has_the_real_value() -> None:
    constants = {n: v for n, v in vars(_fake_nvml_constants).items() if NAME.match(n)}
    assert len(constants) > 40
    assert {n: v for n, v in constants.items() if getattr(pynvml, n, None) != v} == {}


def test_fake_error_classes_are_the_real_ones_by_name_and_code() -> None:
    fake_classes = {n for n in vars(fake_nvml) if n.startswith("NVMLError_")}
    for name in fake_classes:
        assert issubclass(getattr(pynvml, name), pynvml.NVMLError), name
        assert getattr(fake_nvml, name)().value == getattr(pynvml, name)().value, name


def _fields(struct: Any) -> set[str]:
    return {name for name, *_ in struct._fields_}


def _attributes(value: Any) -> set[str]:
    return set(vars(value))


def test_what_the_fake_returns_has_the_real_struct_fields(gpus) -> None:  # type: ignore[no-untyped-def]
    fake_nvml.nvmlInit()
    gpu = gpus[0]
    gpu.process_samples = [(1, 10, 50)]
    field = fake_nvml.nvmlDeviceGetFieldValues(gpu, [(fake_nvml.NVML_FI_DEV_MEMORY_TEMP, 0)])[0]
    assert _attributes(field) == _fields(pynvml.c_nvmlFieldValue_t)
    assert _attributes(field.value) == _fields(pynvml.c_nvmlValue_t)
    sample = fake_nvml.nvmlDeviceGetProcessUtilization(gpu, 0)[0]
    assert _attributes(sample) == _fields(pynvml.c_nvmlProcessUtilizationSample_t)
    support = fake_nvml.nvmlGpmQueryDeviceSupport(gpu)
    assert _attributes(support) == _fields(pynvml.c_nvmlGpmSupport_t)
    request = fake_nvml.c_nvmlGpmMetricsGet_t()
    assert _attributes(request) == _fields(pynvml.c_nvmlGpmMetricsGet_t)
    assert len(request.metrics) == len(pynvml.c_nvmlGpmMetricsGet_t().metrics)
    assert _attributes(request.metrics[0]) == _fields(pynvml.c_nvmlGpmMetric_t) - {"metricInfo"}
    events = fake_nvml.nvmlEventSetCreate()
    fake_nvml.nvmlDeviceRegisterEvents(gpu, fake_nvml.nvmlEventTypeXidCriticalError, events)
    fake_nvml.emit_xid(gpu, 79)
    assert _attributes(fake_nvml.nvmlEventSetWait(events, 0)) == _fields(pynvml.c_nvmlEventData_t)
    utilization = fake_nvml.nvmlDeviceGetUtilizationRates(gpu)
    assert _attributes(utilization) == _fields(pynvml.c_nvmlUtilization_t)
    assert _attributes(fake_nvml.nvmlDeviceGetMemoryInfo(gpu)) <= _fields(pynvml.c_nvmlMemory_t)
    fake_nvml.nvmlShutdown()
