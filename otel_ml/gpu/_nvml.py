"""Loading and starting NVML, the one seam between otel_ml and the GPU driver.

``pynvml`` is imported here, lazily, never at ``import otel_ml``. Tests inject a
stand-in module with the same functions, error classes and constants.
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType
from typing import Final

from otel_ml.environment_variables import OTEL_ML_GPU_NVML_MODULE
from otel_ml.gpu._options import NVML_MODULE

_LOG = logging.getLogger(__name__)

DEFAULT_MODULE: Final = NVML_MODULE.default
# Errors that mean "this machine has no usable NVIDIA GPU": normal, not a fault.
_NO_GPU_ERRORS: Final = ("NVMLError_LibraryNotFound", "NVMLError_DriverNotLoaded", "NVMLError_NoPermission")


def load(nvml: ModuleType | None = None) -> ModuleType | None:
    """Return an initialised NVML module, or None (logged once) when there is no usable GPU.

    Args:
        nvml: A module that behaves like ``pynvml`` (tests); default: the module
            named by ``OTEL_ML_GPU_NVML_MODULE``, else ``pynvml``.
    """
    if nvml is None:
        nvml = _import(NVML_MODULE.resolve(None))
        if nvml is None:
            return None
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        level = logging.INFO if type(exc).__name__ in _NO_GPU_ERRORS else logging.WARNING
        _LOG.log(level, "otel_ml: GPU metrics off: NVML could not be initialised: %s (%s)", exc, type(exc).__name__)
        return None
    return nvml


def _import(name: str) -> ModuleType | None:
    """Import the NVML binding ``name``; a module that is not one is one ERROR line, then ``pynvml``."""
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        _LOG.info("otel_ml: GPU metrics off: cannot import %s (%s); install otel_ml[gpu]", name, exc)
        return None
    error = getattr(module, "NVMLError", None)
    if callable(getattr(module, "nvmlInit", None)) and isinstance(error, type) and issubclass(error, Exception):
        return module
    _LOG.error(
        "%s=%r is invalid: expected a module with NVML's API (nvmlInit, NVMLError), such as %s; using the default",
        OTEL_ML_GPU_NVML_MODULE,
        name,
        DEFAULT_MODULE,
    )
    return None if name == DEFAULT_MODULE else _import(DEFAULT_MODULE)


def shutdown(nvml: ModuleType) -> None:
    """``nvmlShutdown``; a failure is logged, never raised (this runs at exit too)."""
    try:
        nvml.nvmlShutdown()
    except nvml.NVMLError as exc:
        _LOG.debug("otel_ml: nvmlShutdown failed: %s", exc)


def is_error(nvml: ModuleType, exc: BaseException, class_name: str) -> bool:
    """Whether ``exc`` is NVML's error ``class_name`` (e.g. ``NVMLError_GpuIsLost``)."""
    cls = getattr(nvml, class_name, None)
    return cls is not None and isinstance(exc, cls)


def text(value: object) -> str:
    """NVML strings are ``bytes`` in old bindings and ``str`` in new ones."""
    return value.decode() if isinstance(value, bytes) else str(value)
