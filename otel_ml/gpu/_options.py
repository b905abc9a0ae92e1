"""The GPU instrumentor's options: one table, resolved once at instrument time."""

from __future__ import annotations

from dataclasses import dataclass

from otel_ml import environment_variables as ev
from otel_ml._core.options import Option, OptionTable, parse_bool

OPTIONS = OptionTable(
    Option(
        "gpu_all_devices",
        ev.OTEL_ML_GPU_ALL_DEVICES,
        parse_bool,
        False,
        "report every GPU on the host, not only those CUDA_VISIBLE_DEVICES grants",
    ),
    Option(
        "gpu_all_processes",
        ev.OTEL_ML_GPU_ALL_PROCESSES,
        parse_bool,
        False,
        "per-process GPU memory and utilisation for every process, not only this one",
    ),
    Option(
        "gpu_identity_on_series",
        ev.OTEL_ML_GPU_IDENTITY_ON_SERIES,
        parse_bool,
        False,
        "put the GPU's identity attributes (vendor, model, driver, serial, firmware, index) on every GPU "
        "series, not only on hw.gpu.info (each attribute costs every data point of every collection)",
    ),
)


@dataclass(frozen=True)
class GpuOptions:
    """Resolved options (see :data:`OPTIONS` for each one's variable and default)."""

    gpu_all_devices: bool
    gpu_all_processes: bool
    gpu_identity_on_series: bool
