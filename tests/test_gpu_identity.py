"""Where a GPU's identity goes: one hw.gpu.info series per GPU by default, every series behind a switch."""

from __future__ import annotations

import os

import pytest

from otel_ml.gpu import GpuInstrumentor
from otel_ml.gpu import _instruments as cb
from tests import fake_nvml
from tests._gpu_helpers import (
    GPU0,
    GPU1,
    collect,
    device_attributes,
    identity_attributes,
    sensor_attributes,
    wait_for_xid,
)

IDENTITY = set(identity_attributes(0)) | {"ml.gpu.mig.index"}


def instrument(telemetry, **options) -> GpuInstrumentor:  # type: ignore[no-untyped-def]
    inst = GpuInstrumentor()
    inst.instrument(meter_provider=telemetry.meter_provider, nvml=fake_nvml, **options)
    return inst


def test_identity_is_on_one_info_series_per_gpu_only(telemetry, gpus) -> None:  # type: ignore[no-untyped-def]
    gpus[1].serial = None  # NotSupported (consumer boards): left out, not empty
    instrument(telemetry)
    got = collect(telemetry.reader)
    a1 = {**device_attributes(GPU1, 1), **identity_attributes(1)}
    del a1["hw.serial_number"]
    assert got.pop("hw.gpu.info") == {
        GPU0: [(1, {**device_attributes(GPU0, 0), **identity_attributes(0)})],
        GPU1: [(1, a1)],
    }
    # Every other series carries what selects and joins it (hw.id, hw.name, hw.type, hw.parent), not the identity.
    assert got["hw.power"] == {
        GPU0: [(312.456, device_attributes(GPU0, 0))],
        GPU1: [(250.5, device_attributes(GPU1, 1))],
    }
    for name, by_id in got.items():
        for points in by_id.values():
            for _value, attributes in points:
                assert not IDENTITY & set(attributes), (name, attributes)


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_identity_on_every_series_behind_a_switch(telemetry, gpus, monkeypatch, how) -> None:  # type: ignore[no-untyped-def]
    gpus[0].processes = [(os.getpid(), 4096)]
    if how == "environment":
        monkeypatch.setenv("OTEL_ML_GPU_IDENTITY_ON_SERIES", "true")
        inst = instrument(telemetry)
    else:
        inst = instrument(telemetry, gpu_identity_on_series=True)
    fake_nvml.emit_xid(gpus[0], 79)
    wait_for_xid(inst)
    got = collect(telemetry.reader)
    a0 = {**device_attributes(GPU0, 0), **identity_attributes(0)}
    assert got["hw.gpu.info"][GPU0] == [(1, a0)]
    assert got["hw.power"][GPU0] == [(312.456, a0)]
    assert got["hw.errors"][GPU0][0] == (3, {**a0, "error.type": "corrected"})
    assert got["ml.gpu.process.memory.usage"][GPU0] == [(4096, {**a0, "process.pid": os.getpid()})]
    assert got["hw.gpu.xid.errors"][GPU0] == [(1, {**a0, "hw.gpu.xid.code": "79"})]
    # A sensor of the GPU carries its GPU's identity too.
    sensor = sensor_attributes(GPU0, 0, "temperature", "die")
    assert got["hw.temperature"][f"{GPU0}/die"] == [(61.0, {**sensor, **identity_attributes(0)})]


def test_attribute_dicts_are_built_once_not_per_collection(telemetry, gpus) -> None:  # type: ignore[no-untyped-def]
    inst = instrument(telemetry)
    fake_nvml.emit_xid(gpus[1], 48)
    wait_for_xid(inst)
    state = inst._binding.state  # type: ignore[union-attr]
    snapshot = state.sampler.snapshot(1 << 40)  # a bit no instrument uses

    def dicts() -> list[object]:
        observed = [*cb.info(state, snapshot), *cb.xid_errors(state, []), *cb.throttle(state, snapshot)]
        return [o.attributes for o in observed]

    first, second = dicts(), dicts()  # both held: a freed dict's id could be reused
    assert len(first) == len(second) == 2 + 1 + 2 * 9
    assert all(a is b for a, b in zip(first, second, strict=True))
