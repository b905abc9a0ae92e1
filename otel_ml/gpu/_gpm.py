"""GPU Performance Monitoring (GPM, Hopper and newer): what the SMs actually do between two samples.

NVML's utilisation only says a kernel was resident; a GPU deadlocked in a
collective reads 100 %. GPM counts SM cycles, warps and tensor-pipe work
between two samples, the DCGM profiling fields. Each collection takes one
sample and computes the metrics against the previous collection's, so every
window is exactly one collection interval; the probe at instrument time takes
the first sample, so the first collection already reports.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from otel_ml._core import semconv as sc

if TYPE_CHECKING:
    from otel_ml.gpu._devices import Device

# The GPM metrics reported, by pynvml constant, in the order of the returned tuple.
METRIC_NAMES = (
    "NVML_GPM_METRIC_SM_UTIL",  # SM activity: fraction of SMs busy
    "NVML_GPM_METRIC_SM_OCCUPANCY",  # active warps over the theoretical maximum
    "NVML_GPM_METRIC_ANY_TENSOR_UTIL",  # cycles any tensor pipe was active
    "NVML_GPM_METRIC_DRAM_BW_UTIL",  # DRAM bandwidth used over the maximum
)


class GpmState:
    """Two samples of one device, swapped after each read, and the request struct, allocated once."""

    def __init__(self, nvml: ModuleType) -> None:
        self.previous = nvml.nvmlGpmSampleAlloc()
        self.current = nvml.nvmlGpmSampleAlloc()
        self.primed = False
        request = nvml.c_nvmlGpmMetricsGet_t()
        request.version = nvml.NVML_GPM_METRICS_GET_VERSION
        request.numMetrics = len(METRIC_NAMES)
        for i, name in enumerate(METRIC_NAMES):
            request.metrics[i].metricId = getattr(nvml, name)
        self.request = request

    def free(self, nvml: ModuleType) -> None:
        for sample in (self.previous, self.current):
            try:
                nvml.nvmlGpmSampleFree(sample)
            except nvml.NVMLError:
                pass  # at shutdown, after the GPU was lost: nothing more to do


def read_gpm(nvml: ModuleType, device: Device) -> tuple[float | None, ...] | None:
    """The GPM ratios since the previous read (None at the probe, which only takes the first sample)."""
    state: GpmState | None = device.gpm
    if state is None:
        # A MIG instance needs nvmlGpmMigSampleGet on its parent: not reported (the parent's GPU is).
        if sc.HW_PARENT in device.attributes or not nvml.nvmlGpmQueryDeviceSupport(device.handle).isSupportedDevice:
            raise nvml.NVMLError(nvml.NVML_ERROR_NOT_SUPPORTED)
        state = device.gpm = GpmState(nvml)
    nvml.nvmlGpmSampleGet(device.handle, state.current)
    state.previous, state.current = state.current, state.previous
    if not state.primed:
        state.primed = True
        return None
    request: Any = state.request
    request.sample1, request.sample2 = state.current, state.previous  # older, newer
    nvml.nvmlGpmMetricsGet(request)
    metrics = request.metrics
    return tuple(
        metrics[i].value / 100.0 if metrics[i].nvmlReturn == nvml.NVML_SUCCESS else None
        for i in range(len(METRIC_NAMES))
    )


def free(nvml: ModuleType, device: Device) -> None:
    """Free the device's GPM samples (at uninstrument)."""
    if device.gpm is not None:
        device.gpm.free(nvml)
        device.gpm = None
