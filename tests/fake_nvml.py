"""A stand-in for ``pynvml`` (nvidia-ml-py) for machines without an NVIDIA GPU.

Same function names, error classes (``NVMLError_NotSupported``,
``NVMLError_GpuIsLost``, ... generated from the ``NVML_ERROR_*`` codes exactly
as pynvml does) and constants, for the calls otel_ml makes. Each test sets the
devices, their values and their errors with :func:`reset`; a value of
``None`` means the device does not support that read (``NotSupported``), as
NVML answers for a MIG instance's power or temperature.

Imported fresh in a subprocess (``OTEL_ML_GPU_NVML_MODULE=tests.fake_nvml``), it
starts with :func:`default_gpus` (or fails ``nvmlInit`` with the
error code in ``FAKE_NVML_INIT_ERROR``). Used by the tests and the benchmark only.
"""

from __future__ import annotations

import os
import string
import sys
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999
NVML_TEMPERATURE_GPU = 0
NVML_VOLATILE_ECC = 0
NVML_AGGREGATE_ECC = 1
NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
NVML_DEVICE_MIG_DISABLE = 0
NVML_DEVICE_MIG_ENABLE = 1


class NVMLError(Exception):
    """pynvml's base error: ``NVMLError(code)`` builds the matching subclass."""

    _valClassMapping: dict[int, type[NVMLError]] = {}  # noqa: RUF012 - mirrors pynvml

    def __new__(cls, value: int) -> NVMLError:
        if cls is NVMLError:
            cls = NVMLError._valClassMapping.get(value, cls)
        obj = Exception.__new__(cls)
        obj.value = value  # type: ignore[attr-defined]
        return obj

    def __init__(self, value: int | None = None) -> None:
        super().__init__()

    def __str__(self) -> str:
        return f"NVML error {self.value}"  # type: ignore[attr-defined]


def _make_error_classes() -> None:
    module = sys.modules[__name__]
    for name in [n for n in dir(module) if n.startswith("NVML_ERROR_")]:
        class_name = "NVMLError_" + string.capwords(name.replace("NVML_ERROR_", ""), "_").replace("_", "")
        code = getattr(module, name)

        def new(cls: type, *args: Any, _code: int = code) -> NVMLError:
            return NVMLError.__new__(cls, _code)

        cls = type(class_name, (NVMLError,), {"__new__": new})
        cls.__module__ = __name__
        setattr(module, class_name, cls)
        NVMLError._valClassMapping[code] = cls


_make_error_classes()


@dataclass(eq=False)
class FakeGpu:
    """One device (or MIG instance) and what NVML answers about it."""

    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    utilization: int | None = 37  # percent, as NVML reports it
    memory_total: int | None = 85_520_809_984
    memory_used: int | None = 12_884_901_888
    power_mw: int | None = 312_456
    energy_mj: int | None = 9_876_543_210
    temperature: int | None = 61
    ecc: tuple[int, int] | None = (3, 0)  # (corrected, uncorrected)
    processes: list[tuple[int, int | None]] | None = field(default_factory=list)
    mig: list[FakeGpu | None] | None = None  # slots (None: empty); None: MIG not supported
    errors: dict[str, BaseException] = field(default_factory=dict)  # function name -> raised
    lost: bool = False


class _State:
    def __init__(self) -> None:
        self.gpus: list[FakeGpu] = []
        self.driver = "550.54.15"
        self.init_error: BaseException | None = None
        self.initialised = 0
        self.calls: Counter[str] = Counter()


state = _State()


def reset(gpus: list[FakeGpu], *, init_error: BaseException | None = None, driver: str = "550.54.15") -> _State:
    """Start a test: these devices, no calls counted, not initialised."""
    state.gpus = gpus
    state.init_error = init_error
    state.driver = driver
    state.initialised = 0
    state.calls.clear()
    return state


def default_gpus() -> list[FakeGpu]:
    """Two H100s: the second draws 250.5 W at 45 Cel, half its memory used."""
    return [
        FakeGpu("GPU-00000000-1111-2222-3333-444444444444"),
        FakeGpu(
            "GPU-99999999-8888-7777-6666-555555555555",
            utilization=5,
            memory_used=42_760_404_992,
            power_mw=250_500,
            energy_mj=1_000_000,
            temperature=45,
        ),
    ]


def _call(name: str, handle: FakeGpu | None = None) -> None:
    state.calls[name] += 1
    if not state.initialised:
        raise NVMLError(NVML_ERROR_UNINITIALIZED)
    if handle is not None:
        if handle.lost:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        if name in handle.errors:
            raise handle.errors[name]


def _value(value: Any) -> Any:
    if value is None:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    return value


def nvmlInit() -> None:
    state.calls["nvmlInit"] += 1
    if state.init_error is not None:
        raise state.init_error
    state.initialised += 1


def nvmlShutdown() -> None:
    _call("nvmlShutdown")
    state.initialised -= 1


def nvmlSystemGetDriverVersion() -> str:
    _call("nvmlSystemGetDriverVersion")
    return state.driver


def nvmlDeviceGetCount() -> int:
    _call("nvmlDeviceGetCount")
    return len(state.gpus)


def nvmlDeviceGetHandleByIndex(index: int) -> FakeGpu:
    _call("nvmlDeviceGetHandleByIndex")
    if not 0 <= index < len(state.gpus):
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    return state.gpus[index]


def nvmlDeviceGetUUID(handle: FakeGpu) -> str:
    _call("nvmlDeviceGetUUID", handle)
    return handle.uuid


def nvmlDeviceGetName(handle: FakeGpu) -> str:
    _call("nvmlDeviceGetName", handle)
    return handle.name


def nvmlDeviceGetMigMode(handle: FakeGpu) -> list[int]:
    _call("nvmlDeviceGetMigMode", handle)
    mode = NVML_DEVICE_MIG_ENABLE if _value(handle.mig) else NVML_DEVICE_MIG_DISABLE
    return [mode, mode]


def nvmlDeviceGetMaxMigDeviceCount(handle: FakeGpu) -> int:
    _call("nvmlDeviceGetMaxMigDeviceCount", handle)
    return len(_value(handle.mig))


def nvmlDeviceGetMigDeviceHandleByIndex(handle: FakeGpu, index: int) -> FakeGpu:
    _call("nvmlDeviceGetMigDeviceHandleByIndex", handle)
    slot = _value(handle.mig)[index]
    if slot is None:
        raise NVMLError(NVML_ERROR_NOT_FOUND)
    return slot


def nvmlDeviceGetUtilizationRates(handle: FakeGpu) -> SimpleNamespace:
    _call("nvmlDeviceGetUtilizationRates", handle)
    return SimpleNamespace(gpu=_value(handle.utilization), memory=0)


def nvmlDeviceGetMemoryInfo(handle: FakeGpu) -> SimpleNamespace:
    _call("nvmlDeviceGetMemoryInfo", handle)
    total, used = _value(handle.memory_total), _value(handle.memory_used)
    return SimpleNamespace(total=total, used=used, free=total - used)


def nvmlDeviceGetPowerUsage(handle: FakeGpu) -> int:
    _call("nvmlDeviceGetPowerUsage", handle)
    return int(_value(handle.power_mw))


def nvmlDeviceGetTotalEnergyConsumption(handle: FakeGpu) -> int:
    _call("nvmlDeviceGetTotalEnergyConsumption", handle)
    return int(_value(handle.energy_mj))


def nvmlDeviceGetTemperature(handle: FakeGpu, sensor: int) -> int:
    _call("nvmlDeviceGetTemperature", handle)
    if sensor != NVML_TEMPERATURE_GPU:
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    return int(_value(handle.temperature))


def nvmlDeviceGetTotalEccErrors(handle: FakeGpu, error_type: int, counter_type: int) -> int:
    _call("nvmlDeviceGetTotalEccErrors", handle)
    if counter_type not in (NVML_VOLATILE_ECC, NVML_AGGREGATE_ECC):
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    return int(_value(handle.ecc)[error_type])


def nvmlDeviceGetComputeRunningProcesses(handle: FakeGpu) -> list[SimpleNamespace]:
    _call("nvmlDeviceGetComputeRunningProcesses", handle)
    return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in _value(handle.processes)]


# A subprocess test sets FAKE_NVML_INIT_ERROR to an NVML error code to play a machine without a GPU.
reset(
    default_gpus(),
    init_error=NVMLError(int(os.environ["FAKE_NVML_INIT_ERROR"])) if os.environ.get("FAKE_NVML_INIT_ERROR") else None,
)
