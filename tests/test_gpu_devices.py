"""Which GPUs are reported: CUDA_VISIBLE_DEVICES (indices, UUIDs, prefixes), the all-devices switch, MIG."""

from __future__ import annotations

import logging

import pytest

from otel_ml.gpu import GpuInstrumentor
from tests import fake_nvml
from tests._gpu_helpers import GPU0, GPU1, collect, device_attributes, identity_attributes
from tests.fake_nvml import FakeGpu

MIG_A = "MIG-aaaaaaaa-0000-0000-0000-000000000000"
MIG_C = "MIG-cccccccc-0000-0000-0000-000000000000"


def reported(telemetry, monkeypatch, visible: str | None, **options) -> set[str]:  # type: ignore[no-untyped-def]
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    GpuInstrumentor().instrument(meter_provider=telemetry.meter_provider, nvml=fake_nvml, **options)
    return set(collect(telemetry.reader).get("hw.gpu.memory.limit", {}))


@pytest.mark.parametrize(
    ("visible", "expected"),
    [
        (None, {GPU0, GPU1}),  # unset: every device
        ("1", {GPU1}),
        ("1,0", {GPU0, GPU1}),
        (GPU1, {GPU1}),
        ("GPU-9999", {GPU1}),  # a unique prefix, as CUDA accepts
        ("0,7,1", {GPU0}),  # like CUDA, parsing stops at the first entry that matches nothing
    ],
)
def test_cuda_visible_devices(telemetry, gpus, monkeypatch, visible, expected) -> None:  # type: ignore[no-untyped-def]
    assert reported(telemetry, monkeypatch, visible) == expected


def test_empty_cuda_visible_devices_means_none_with_one_info_line(telemetry, gpus, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.INFO, logger="otel_ml.gpu"):
        assert reported(telemetry, monkeypatch, "") == set()
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("otel_ml.gpu")]
    assert messages == [
        "otel_ml: GPU metrics off: no GPU visible to this process (CUDA_VISIBLE_DEVICES=''; "
        "gpu_all_devices=True reports every GPU on the host)"
    ]
    assert fake_nvml.state.calls["nvmlShutdown"] == 1  # NVML is not left initialised


def test_unknown_entry_is_warned_about(telemetry, gpus, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.WARNING, logger="otel_ml.gpu"):
        assert reported(telemetry, monkeypatch, "GPU-nope,1") == set()
    assert [r.getMessage() for r in caplog.records if r.name.startswith("otel_ml.gpu")] == [
        "otel_ml: CUDA_VISIBLE_DEVICES entry 'GPU-nope' matches no GPU index or UUID; like CUDA, the entries "
        "from it on are ignored"
    ]


def test_all_devices_switch_beats_cuda_visible_devices(telemetry, gpus, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert reported(telemetry, monkeypatch, "0", gpu_all_devices=True) == {GPU0, GPU1}


def test_all_devices_environment_variable(telemetry, gpus, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("OTEL_ML_GPU_ALL_DEVICES", "true")
    assert reported(telemetry, monkeypatch, "") == {GPU0, GPU1}


def _mig_gpu() -> FakeGpu:
    """An A100 with MIG on: slots 0 and 2 hold instances, slot 1 is empty."""

    def instance(uuid: str, used: int) -> FakeGpu:
        # What NVML offers on a MIG instance: memory and processes; the rest is the parent's.
        return FakeGpu(
            uuid,
            name="NVIDIA A100-SXM4-40GB MIG 1g.5gb",
            utilization=None,
            memory_total=5_100_273_664,
            memory_used=used,
            power_mw=None,
            energy_mj=None,
            temperature=None,
            ecc=None,
            serial=None,
            vbios=None,
            encoder=None,
            decoder=None,
            power_limit_mw=None,
            fan=None,
            clocks_mhz=None,
            clock_events=None,
            retired_pending=None,
            remapped_rows=None,
            fields={},
            gpm=None,
            process_samples=None,
        )

    return FakeGpu(
        "GPU-a100a100-0000-0000-0000-000000000000",
        name="NVIDIA A100-SXM4-40GB",
        mig=[instance(MIG_A, 1_000_000), None, instance(MIG_C, 2_000_000)],
    )


def test_mig_instances_are_devices_with_their_parent(telemetry, gpus, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    parent = _mig_gpu()
    fake_nvml.reset([parent])
    reported(telemetry, monkeypatch, None)
    got = collect(telemetry.reader)
    parent_attrs = device_attributes(parent.uuid, 0)
    a = {"hw.id": MIG_A, "hw.name": "gpu0/mig0", "hw.type": "gpu", "hw.parent": parent.uuid}
    c = {"hw.id": MIG_C, "hw.name": "gpu0/mig2", "hw.type": "gpu", "hw.parent": parent.uuid}
    assert got["hw.gpu.memory.usage"] == {
        parent.uuid: [(12_884_901_888, parent_attrs)],
        MIG_A: [(1_000_000, a)],
        MIG_C: [(2_000_000, c)],
    }
    assert got["hw.gpu.memory.limit"][MIG_C] == [(5_100_273_664, c)]
    # The identity is on hw.gpu.info: a MIG instance has its own model and slot, no serial or VBIOS of its own.
    mig = {
        "hw.vendor": "NVIDIA",
        "hw.model": "NVIDIA A100-SXM4-40GB MIG 1g.5gb",
        "hw.driver_version": "550.54.15",
        "ml.gpu.index": 0,
    }
    assert got["hw.gpu.info"] == {
        parent.uuid: [(1, {**parent_attrs, **identity_attributes(0, "NVIDIA A100-SXM4-40GB")})],
        MIG_A: [(1, {**a, **mig, "ml.gpu.mig.index": 0})],
        MIG_C: [(1, {**c, **mig, "ml.gpu.mig.index": 2})],
    }
    # Everything but memory (and processes): NVML offers it on the parent only.
    for name, by_id in got.items():
        if name not in ("hw.gpu.memory.usage", "hw.gpu.memory.limit", "hw.gpu.memory.utilization", "hw.gpu.info"):
            assert {hw_id.split("/")[0] for hw_id in by_id} == {parent.uuid}, name


def test_a_visible_mig_instance_brings_its_parent_but_not_its_siblings(telemetry, gpus, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    parent = _mig_gpu()
    fake_nvml.reset([parent, *gpus])
    assert reported(telemetry, monkeypatch, MIG_C) == {parent.uuid, MIG_C}
