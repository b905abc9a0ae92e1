"""The GPU instrumentor's options: one table, resolved once at instrument time."""

from __future__ import annotations

from dataclasses import dataclass

from otel_ml import environment_variables as ev
from otel_ml._core.options import Option, OptionTable, parse_bool, parse_str

OPTIONS = OptionTable(
    Option("gpu_all_devices", ev.OTEL_ML_GPU_ALL_DEVICES, parse_bool, False),
    Option("gpu_all_processes", ev.OTEL_ML_GPU_ALL_PROCESSES, parse_bool, False),
    Option("gpu_identity_on_series", ev.OTEL_ML_GPU_IDENTITY_ON_SERIES, parse_bool, False),
)

NVML_MODULE = Option("gpu_nvml_module", ev.OTEL_ML_GPU_NVML_MODULE, parse_str, "pynvml")
"""Not a keyword: the tests' seam for a fake NVML in a subprocess (read by :mod:`otel_ml.gpu._nvml`)."""


@dataclass(frozen=True)
class GpuOptions:
    """Resolved options (see :data:`OPTIONS` for each one's variable and default)."""

    gpu_all_devices: bool
    gpu_all_processes: bool
    gpu_identity_on_series: bool
