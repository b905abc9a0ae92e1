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

A wedged driver: :func:`block` (or ``FAKE_NVML_BLOCK=<function>`` and
``FAKE_NVML_BLOCK_AFTER=<n>`` in a subprocess) makes every call of that
function after its first ``n`` block until :func:`release`, as a real NVML
call does when the driver hangs (``FAKE_NVML_RELEASE_AFTER=<s>``: released
after that many seconds, a slow driver).
"""

from __future__ import annotations

import os
import string
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from tests import _fake_nvml_constants as C
from tests._fake_nvml_constants import *  # noqa: F403 - the fake is pynvml's namespace


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


DEFAULT_FIELDS = {
    C.NVML_FI_DEV_MEMORY_TEMP: 72,  # Cel
    C.NVML_FI_DEV_PCIE_COUNT_RX_BYTES: 123_456_789,
    C.NVML_FI_DEV_PCIE_COUNT_TX_BYTES: 98_765_432,
    C.NVML_FI_DEV_PCIE_REPLAY_COUNTER: 2,
    C.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX: 1_000,  # KiB
    C.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX: 2_000,
}
DEFAULT_GPM = {
    C.NVML_GPM_METRIC_SM_UTIL: 62.5,
    C.NVML_GPM_METRIC_SM_OCCUPANCY: 31.25,
    C.NVML_GPM_METRIC_ANY_TENSOR_UTIL: 40.0,
    C.NVML_GPM_METRIC_DRAM_BW_UTIL: 25.0,
}


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
    serial: str | None = "1654922012345"
    vbios: str | None = "96.00.99.00.01"
    encoder: int | None = 12  # percent
    decoder: int | None = 3
    power_limit_mw: int | None = 700_000
    fan: int | None = 40  # percent of maximum
    clocks_mhz: dict[int, int] | None = field(default_factory=lambda: {C.NVML_CLOCK_SM: 1980, C.NVML_CLOCK_MEM: 2619})
    clock_events: int | None = 0  # nvmlClocksEventReason* bits
    retired_pending: bool | None = False
    remapped_rows: tuple[int, int, int, int] | None = (0, 0, 0, 0)  # corrected, uncorrected, pending, failure
    # field id -> value; absent: NotSupported. field_errors: field id -> NVML error code for that field.
    fields: dict[int, int] = field(default_factory=lambda: dict(DEFAULT_FIELDS))
    field_errors: dict[int, int] = field(default_factory=dict)
    gpm: dict[int, float] | None = field(default_factory=lambda: dict(DEFAULT_GPM))  # metric id -> percent
    process_samples: list[tuple[int, int, int]] | None = field(default_factory=list)  # (pid, time us, smUtil %)
    event_types: int = C.nvmlEventTypeXidCriticalError


class _State:
    def __init__(self) -> None:
        self.gpus: list[FakeGpu] = []
        self.driver = "550.54.15"
        self.init_error: BaseException | None = None
        self.initialised = 0
        self.calls: Counter[str] = Counter()
        self.event_sets: list[Any]  # the _fake_nvml_dcgm event sets = []
        self.gpm_samples = 0  # allocated and not freed
        self.event_waits = 0
        self.blocked: dict[str, int] = {}  # function name -> calls that answer before it blocks
        self.released = threading.Event()
        self.blocking = 0  # calls blocked right now


state = _State()


def reset(gpus: list[FakeGpu], *, init_error: BaseException | None = None, driver: str = "550.54.15") -> _State:
    """Start a test: these devices, no calls counted, not initialised."""
    state.gpus = gpus
    state.init_error = init_error
    state.driver = driver
    state.initialised = 0
    state.calls.clear()
    state.event_sets = []
    state.gpm_samples = 0
    release()  # a call still blocked from an earlier test returns
    state.released.clear()
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


def block(name: str, after: int = 0) -> None:
    """Make the calls of ``name`` after its first ``after`` (counted from now) hang until :func:`release`."""
    state.released.clear()
    state.blocked[name] = state.calls[name] + after


def release() -> None:
    """Let every blocked call return (and later ones not block)."""
    state.blocked.clear()
    state.released.set()


def _hang(name: str) -> None:
    if name in state.blocked and state.calls[name] > state.blocked[name]:
        state.blocking += 1
        try:
            state.released.wait()
        finally:
            state.blocking -= 1


def _call(name: str, handle: FakeGpu | None = None) -> None:
    state.calls[name] += 1
    _hang(name)
    if not state.initialised:
        raise NVMLError(C.NVML_ERROR_UNINITIALIZED)
    if handle is not None:
        if handle.lost:
            raise NVMLError(C.NVML_ERROR_GPU_IS_LOST)
        if name in handle.errors:
            raise handle.errors[name]


def _value(value: Any) -> Any:
    if value is None:
        raise NVMLError(C.NVML_ERROR_NOT_SUPPORTED)
    return value


def nvmlInit() -> None:
    state.calls["nvmlInit"] += 1
    _hang("nvmlInit")
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
        raise NVMLError(C.NVML_ERROR_INVALID_ARGUMENT)
    return state.gpus[index]


def nvmlDeviceGetUUID(handle: FakeGpu) -> str:
    _call("nvmlDeviceGetUUID", handle)
    return handle.uuid


def nvmlDeviceGetName(handle: FakeGpu) -> str:
    _call("nvmlDeviceGetName", handle)
    return handle.name


def nvmlDeviceGetMigMode(device: FakeGpu) -> list[int]:
    _call("nvmlDeviceGetMigMode", device)
    mode = C.NVML_DEVICE_MIG_ENABLE if _value(device.mig) else C.NVML_DEVICE_MIG_DISABLE
    return [mode, mode]


def nvmlDeviceGetMaxMigDeviceCount(device: FakeGpu) -> int:
    _call("nvmlDeviceGetMaxMigDeviceCount", device)
    return len(_value(device.mig))


def nvmlDeviceGetMigDeviceHandleByIndex(device: FakeGpu, index: int) -> FakeGpu:
    _call("nvmlDeviceGetMigDeviceHandleByIndex", device)
    slot = _value(device.mig)[index]
    if slot is None:
        raise NVMLError(C.NVML_ERROR_NOT_FOUND)
    return slot


def nvmlDeviceGetUtilizationRates(handle: FakeGpu) -> SimpleNamespace:
    _call("nvmlDeviceGetUtilizationRates", handle)
    return SimpleNamespace(gpu=_value(handle.utilization), memory=0)


def nvmlDeviceGetMemoryInfo(handle: FakeGpu, version: Any = None) -> SimpleNamespace:
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
    if sensor != C.NVML_TEMPERATURE_GPU:
        raise NVMLError(C.NVML_ERROR_INVALID_ARGUMENT)
    return int(_value(handle.temperature))


def nvmlDeviceGetTotalEccErrors(handle: FakeGpu, errorType: int, counterType: int) -> int:
    _call("nvmlDeviceGetTotalEccErrors", handle)
    if counterType not in (C.NVML_VOLATILE_ECC, C.NVML_AGGREGATE_ECC):
        raise NVMLError(C.NVML_ERROR_INVALID_ARGUMENT)
    return int(_value(handle.ecc)[errorType])


def nvmlDeviceGetComputeRunningProcesses(handle: FakeGpu) -> list[SimpleNamespace]:
    _call("nvmlDeviceGetComputeRunningProcesses", handle)
    return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in _value(handle.processes)]


# Split off to keep modules small; imported here, after what it builds on, as part of this module.
from tests._fake_nvml_dcgm import *  # noqa: E402, F403

# A subprocess test sets FAKE_NVML_INIT_ERROR to an NVML error code to play a machine without a GPU.
reset(
    default_gpus(),
    init_error=NVMLError(int(os.environ["FAKE_NVML_INIT_ERROR"])) if os.environ.get("FAKE_NVML_INIT_ERROR") else None,
)
if os.environ.get("FAKE_NVML_BLOCK"):
    block(os.environ["FAKE_NVML_BLOCK"], int(os.environ.get("FAKE_NVML_BLOCK_AFTER", "0")))
    if os.environ.get("FAKE_NVML_RELEASE_AFTER"):  # a slow driver rather than a wedged one: answers after N s
        _timer = threading.Timer(float(os.environ["FAKE_NVML_RELEASE_AFTER"]), release)
        _timer.daemon = True
        _timer.start()
