"""XID errors: one watcher thread, bounded codes, logged once, no collection cost, a clean stop."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from otel_ml.gpu import GpuInstrumentor
from otel_ml.gpu._xid import MAX_CODES
from tests import fake_nvml
from tests._gpu_helpers import GPU0, GPU1, collect, device_attributes, wait_for_xid

ROOT = Path(__file__).resolve().parent.parent


def instrument(telemetry) -> GpuInstrumentor:  # type: ignore[no-untyped-def]
    inst = GpuInstrumentor()
    inst.instrument(meter_provider=telemetry.meter_provider, nvml=fake_nvml)
    return inst


def _watchers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "otel_ml-gpu-xid"]


def test_xid_errors_counted_by_code_and_logged_once_per_gpu_and_code(telemetry, gpus, caplog) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.WARNING, logger="otel_ml.gpu"):
        inst = instrument(telemetry)
        assert len(_watchers()) == 1  # one thread for every GPU
        for gpu, code in ((gpus[1], 79), (gpus[1], 79), (gpus[1], 48), (gpus[0], 79)):
            fake_nvml.emit_xid(gpu, code)
        wait_for_xid(inst, 4)
    got = collect(telemetry.reader)["hw.gpu.xid.errors"]
    a0, a1 = device_attributes(GPU0, 0), device_attributes(GPU1, 1)
    assert sorted(got[GPU1], key=lambda p: p[1]["hw.gpu.xid.code"]) == [
        (1, {**a1, "hw.gpu.xid.code": "48"}),
        (2, {**a1, "hw.gpu.xid.code": "79"}),
    ]
    assert got[GPU0] == [(1, {**a0, "hw.gpu.xid.code": "79"})]
    lines = [r.getMessage() for r in caplog.records if "reported XID" in r.getMessage()]
    assert [line.split(" see ")[0] for line in lines] == [
        f"otel_ml: GPU gpu1 ({GPU1}) reported XID 79;",
        f"otel_ml: GPU gpu1 ({GPU1}) reported XID 48;",
        f"otel_ml: GPU gpu0 ({GPU0}) reported XID 79;",
    ]


def test_xid_codes_are_bounded(telemetry, gpus) -> None:  # type: ignore[no-untyped-def]
    inst = instrument(telemetry)
    for code in range(1, MAX_CODES + 6):
        fake_nvml.emit_xid(gpus[0], code)
    wait_for_xid(inst, MAX_CODES + 5)
    codes = {attrs["hw.gpu.xid.code"]: value for value, attrs in collect(telemetry.reader)["hw.gpu.xid.errors"][GPU0]}
    assert len(codes) == MAX_CODES + 1
    assert codes["other"] == 5


def test_watching_costs_a_collection_no_nvml_call(telemetry, gpus) -> None:  # type: ignore[no-untyped-def]
    inst = instrument(telemetry)
    fake_nvml.emit_xid(gpus[0], 13)
    wait_for_xid(inst)
    collect(telemetry.reader)
    fake_nvml.state.calls.clear()
    got = collect(telemetry.reader)
    assert got["hw.gpu.xid.errors"][GPU0][0][0] == 1
    assert sum(fake_nvml.state.calls.values()) == 2 * 21  # the sampler's reads; no event call
    assert fake_nvml.state.event_waits > 0  # the thread waits on its own


def test_uninstrument_stops_the_thread_promptly_and_frees_the_event_set(telemetry, gpus) -> None:  # type: ignore[no-untyped-def]
    inst = instrument(telemetry)
    started = time.monotonic()
    inst.uninstrument()
    assert time.monotonic() - started < 1.0
    assert _watchers() == []
    assert [events.freed for events in fake_nvml.state.event_sets] == [True]
    assert fake_nvml.state.initialised == 0
    assert "hw.gpu.xid.errors" not in collect(telemetry.reader)


def test_no_thread_when_no_gpu_supports_xid_events(telemetry, gpus) -> None:  # type: ignore[no-untyped-def]
    for gpu in gpus:
        gpu.event_types = 0
    inst = instrument(telemetry)
    assert inst.sampler is not None
    assert _watchers() == []
    assert [events.freed for events in fake_nvml.state.event_sets] == [True]


def test_an_xid_from_a_gpu_nvml_cannot_name_is_logged_not_counted(telemetry, gpus, caplog) -> None:  # type: ignore[no-untyped-def]
    inst = instrument(telemetry)
    gpus[1].errors["nvmlDeviceGetUUID"] = fake_nvml.NVMLError_GpuIsLost()
    with caplog.at_level(logging.WARNING, logger="otel_ml.gpu"):
        fake_nvml.emit_xid(gpus[1], 79)
        fake_nvml.emit_xid(gpus[0], 31)
        wait_for_xid(inst)
    assert "otel_ml: XID 79 on a GPU that NVML can no longer name" in caplog.messages
    assert set(collect(telemetry.reader)["hw.gpu.xid.errors"]) == {GPU0}


def test_the_thread_stops_at_exit_without_holding_the_interpreter() -> None:
    code = """
import atexit, threading, time
from tests import fake_nvml
# Registered before instrumenting, so it runs after otel_ml's exit hook.
atexit.register(lambda: print("after:", [t.name for t in threading.enumerate() if t.name == "otel_ml-gpu-xid"],
                              [e.freed for e in fake_nvml.state.event_sets], fake_nvml.state.initialised))
from opentelemetry.sdk.metrics import MeterProvider
from otel_ml.gpu import GpuInstrumentor
GpuInstrumentor().instrument(meter_provider=MeterProvider(), nvml=fake_nvml, gpu_all_devices=True)
print("watching:", [t.name for t in threading.enumerate() if t.name == "otel_ml-gpu-xid"])
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["watching: ['otel_ml-gpu-xid']", "after: [] [True] 0"]
    assert time.monotonic() - started < 30
