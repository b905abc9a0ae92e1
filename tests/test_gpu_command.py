"""``otel-ml gpu`` in a subprocess with the fake NVML, and the Prometheus names the embedded endpoint serves."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import generate_latest

from otel_ml.distro.endpoint import OtelMLPrometheusMetricReader
from otel_ml.gpu import GpuInstrumentor
from tests import fake_nvml
from tests._gpu_helpers import GPU1, wait_for_xid

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_NAMES = {
    "hw_gpu_utilization": "gauge",
    "hw_gpu_memory_utilization": "gauge",
    "hw_gpu_memory_usage_bytes": "gauge",
    "hw_gpu_memory_limit_bytes": "gauge",
    "hw_power_watts": "gauge",
    "hw_energy_joules_total": "counter",
    "hw_temperature_celsius": "gauge",
    "hw_errors_total": "counter",
    "hw_status": "gauge",
    "hw_gpu_io_bytes_total": "counter",
    "hw_fan_speed_ratio": "gauge",
    "hw_gpu_clock_hertz": "gauge",
    "hw_gpu_throttle": "gauge",
    "hw_gpu_power_limit_watts": "gauge",
    "hw_gpu_pcie_replays_total": "counter",
    "hw_gpu_nvlink_io_bytes_total": "counter",
    "hw_gpu_sm_activity": "gauge",
    "hw_gpu_sm_occupancy": "gauge",
    "hw_gpu_tensor_activity": "gauge",
    "hw_gpu_dram_activity": "gauge",
    "hw_gpu_xid_errors_total": "counter",
    "ml_gpu_process_memory_usage_bytes": "gauge",
    "ml_gpu_process_utilization": "gauge",
    "hw_gpu_info": "gauge",
}


def _families(text: str) -> dict[str, str]:
    """Sample name -> the type of its family, for every sample served."""
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    samples = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{", text, re.MULTILINE))
    return {name: types.get(name) or types[name.removesuffix("_total")] for name in samples}


def test_prometheus_names_follow_the_upstream_unit_mapping(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpus = fake_nvml.reset(fake_nvml.default_gpus()).gpus
    gpus[0].processes = [(os.getpid(), 4096)]
    reader = OtelMLPrometheusMetricReader(start_server=False)
    provider = MeterProvider(metric_readers=[reader])
    try:
        GpuInstrumentor().instrument(meter_provider=provider, nvml=fake_nvml)
        gpus[0].process_samples = [(os.getpid(), 1_000, 50)]  # a sample after the instrument-time probe
        fake_nvml.emit_xid(gpus[1], 79)
        wait_for_xid(GpuInstrumentor())
        text = generate_latest(reader.registry).decode()
    finally:
        GpuInstrumentor().uninstrument()
        provider.shutdown()
    families = _families(text)
    assert {k: v for k, v in families.items() if k != "target_info"} == PROMETHEUS_NAMES
    assert re.search(r'^hw_power_watts\{[^}]*hw_id="' + GPU1 + r'"[^}]*\} 250\.5$', text, re.MULTILINE)
    assert re.search(r'^hw_energy_joules_total\{[^}]*hw_id="' + GPU1 + r'"[^}]*\} 1000\.0$', text, re.MULTILINE)
    # The identity is a label of hw_gpu_info only, one series per GPU.
    info = re.findall(r"^hw_gpu_info\{([^}]*)\} 1\.0$", text, re.MULTILINE)
    assert len(info) == 2 and all('hw_model="NVIDIA H100 80GB HBM3"' in labels for labels in info), info
    assert not re.search(r'^(?!hw_gpu_info)\w+\{[^}]*hw_model="', text, re.MULTILINE)


@pytest.fixture
def command(request: pytest.FixtureRequest) -> Iterator[subprocess.Popen[str]]:
    env = {
        **getattr(request, "param", {}),
        **os.environ,
        "OTEL_ML_GPU_NVML_MODULE": "tests.fake_nvml",  # the test-only seam: the fake instead of pynvml
        "PYTHONPATH": str(ROOT),
        "CUDA_VISIBLE_DEVICES": "",  # ignored: the command reports every GPU by default
        "OTEL_METRICS_EXPORTER": "otel_ml_prometheus",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "otel_ml.distro.cli", "gpu", "--host", "127.0.0.1", "--port", "0"],
        env=env,
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield proc
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [
        {},
        # nvmlInit answers after 4 s, past instrument()'s 2 s wait (a large host without persistence mode):
        # the command waits for NVML rather than exiting "no GPU".
        {"FAKE_NVML_BLOCK": "nvmlInit", "FAKE_NVML_RELEASE_AFTER": "4"},
    ],
    indirect=True,
    ids=["nvml-answers", "nvml-init-slower-than-instrument-waits"],
)
def test_otel_ml_gpu_serves_the_gauges_until_sigterm(command) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 60
    url = None
    lines: list[str] = []
    while url is None and time.monotonic() < deadline:
        line = command.stderr.readline()
        if not line:
            break
        lines.append(line)
        match = re.search(r"serving 2 device\(s\) on (http://127\.0\.0\.1:\d+/metrics)", line)
        url = match.group(1) if match else None
    assert url is not None, "".join(lines)
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    assert re.search(r'^hw_power_watts\{[^}]*hw_id="' + GPU1 + r'"[^}]*\} 250\.5$', text, re.MULTILINE), text
    assert re.search(r'^hw_temperature_celsius\{[^}]*hw_name="gpu0 die"[^}]*\} 61\.0$', text, re.MULTILINE)
    os.kill(command.pid, signal.SIGTERM)
    _out, err = command.communicate(timeout=30)
    assert command.returncode == 0, err
    assert "signal 15, stopping" in err


@pytest.mark.slow
def test_otel_ml_gpu_without_a_gpu_exits_1() -> None:
    env = {
        **os.environ,
        "OTEL_ML_GPU_NVML_MODULE": "tests.fake_nvml",
        "FAKE_NVML_INIT_ERROR": "12",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-m", "otel_ml.distro.cli", "gpu", "--port", "0"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "GPU metrics off: NVML could not be initialised: NVML error 12 (NVMLError_LibraryNotFound)" in done.stderr
    assert "otel-ml gpu: no GPU to report" in done.stderr
