"""A wedged NVML call (the fake's blocking call) holds neither a collection, nor instrument(), nor uninstrument().

Every NVML call runs on the one NVML thread with a deadline; these tests use
the real deadlines (2 s), so each stuck case costs about that.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest

from otel_ml.gpu import GpuInstrumentor
from otel_ml.gpu._driver import READ_DEADLINE, START_WAIT, driver
from tests import fake_nvml
from tests._gpu_helpers import GPU0, GPU1, collect, gpus  # noqa: F401 - gpus is a fixture

STUCK = (
    "otel_ml: NVML did not answer within 2 s (reading the GPUs); GPU metrics are left out of collections until it "
    "answers. The program and the /metrics endpoint do not wait for it."
)


@pytest.fixture(autouse=True)
def _released() -> Iterator[None]:
    yield
    fake_nvml.release()
    deadline = time.monotonic() + 5
    while driver.stuck and time.monotonic() < deadline:  # the overdue call returns once released
        time.sleep(0.01)
    assert not driver.stuck
    # An XID watcher stopped without a join (NVML was stuck) ends on its own once released: leave none behind.
    while any(t.name == "otel_ml-gpu-xid" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not [t for t in threading.enumerate() if t.name == "otel_ml-gpu-xid"]


def otel_ml_lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level and r.name.startswith("otel_ml")]


def timed(call):  # type: ignore[no-untyped-def]
    started = time.monotonic()
    result = call()
    return time.monotonic() - started, result


def test_a_read_that_hangs_costs_one_deadline_then_nothing_until_nvml_answers(telemetry, gpus, caplog) -> None:  # noqa: F811
    inst = GpuInstrumentor()
    inst.instrument(meter_provider=telemetry.meter_provider, nvml=fake_nvml)
    assert len(collect(telemetry.reader)["hw.power"]) == 2
    fake_nvml.block("nvmlDeviceGetPowerUsage")
    with caplog.at_level(logging.INFO, logger="otel_ml"):
        first, got = timed(lambda: collect(telemetry.reader))
        assert got == {}  # no GPU point at all, not stale ones
        assert READ_DEADLINE <= first < READ_DEADLINE + 1.0
        assert fake_nvml.state.blocking == 1
        for _ in range(3):  # while the call hangs, collections answer at once and queue nothing behind it
            again, got = timed(lambda: collect(telemetry.reader))
            assert got == {} and again < 0.5
        assert fake_nvml.state.blocking == 1
        assert otel_ml_lines(caplog, logging.WARNING) == [STUCK]
        calls = fake_nvml.state.calls["nvmlDeviceGetPowerUsage"]
        fake_nvml.release()
        deadline = time.monotonic() + 5
        while driver.stuck and time.monotonic() < deadline:
            time.sleep(0.01)
        got = collect(telemetry.reader)
    assert [v for v, _ in got["hw.power"][GPU0]] == [312.456]
    assert [v for v, _ in got["hw.power"][GPU1]] == [250.5]
    # The hung read went on to the second device (1 call), and the collection after it read both (2).
    assert fake_nvml.state.calls["nvmlDeviceGetPowerUsage"] == calls + 3
    infos = [line for line in otel_ml_lines(caplog, logging.INFO) if "answered again" in line]
    assert len(infos) == 1 and infos[0].startswith("otel_ml: NVML answered again (reading the GPUs took ")
    assert otel_ml_lines(caplog, logging.WARNING) == [STUCK]  # still said once


def test_uninstrument_while_a_read_hangs_returns_at_once(telemetry, gpus) -> None:  # noqa: F811
    inst = GpuInstrumentor()
    inst.instrument(meter_provider=telemetry.meter_provider, nvml=fake_nvml)
    fake_nvml.block("nvmlDeviceGetPowerUsage")
    assert collect(telemetry.reader) == {}
    took, _ = timed(inst.uninstrument)
    assert took < 0.5  # neither the XID thread nor nvmlShutdown is waited for while NVML is stuck
    assert inst.sampler is None and collect(telemetry.reader) == {}


def test_an_nvml_init_that_hangs_does_not_hold_instrument(telemetry, gpus, caplog) -> None:  # noqa: F811
    fake_nvml.block("nvmlInit")
    inst = GpuInstrumentor()
    with caplog.at_level(logging.INFO, logger="otel_ml"):
        took, _ = timed(lambda: inst.instrument(meter_provider=telemetry.meter_provider, nvml=fake_nvml))
        assert START_WAIT <= took < START_WAIT + 1.0
        assert inst.sampler is None
        assert collect(telemetry.reader) == {}  # answers at once: nothing queued behind nvmlInit
        fake_nvml.release()  # the driver answers at last: GPU metrics start without another instrument()
        deadline = time.monotonic() + 5
        while inst.sampler is None and time.monotonic() < deadline:
            time.sleep(0.01)
        got = collect(telemetry.reader)
    assert [v for v, _ in got["hw.power"][GPU0]] == [312.456]
    assert otel_ml_lines(caplog, logging.WARNING) == [
        "otel_ml: NVML has not answered within 2 s (nvmlInit or listing the GPUs); the program goes on and GPU "
        "metrics start when NVML answers"
    ]
    assert any(line.startswith("otel_ml: GPU metrics for gpu0") for line in otel_ml_lines(caplog, logging.INFO))


def test_uninstrumented_before_nvml_answers_stays_off_and_shuts_nvml_down(telemetry, gpus) -> None:  # noqa: F811
    fake_nvml.block("nvmlInit")
    inst = GpuInstrumentor()
    inst.instrument(meter_provider=telemetry.meter_provider, nvml=fake_nvml)
    took, _ = timed(inst.uninstrument)
    assert took < 0.5
    done = threading.Event()
    fake_nvml.release()
    deadline = time.monotonic() + 5
    while fake_nvml.state.calls["nvmlShutdown"] == 0 and time.monotonic() < deadline:
        done.wait(0.01)
    assert inst.sampler is None and collect(telemetry.reader) == {}
    assert fake_nvml.state.initialised == 0  # the late start was undone: init, then shutdown


def test_the_nvml_thread_ends_when_idle_and_starts_again_on_the_next_call(monkeypatch) -> None:
    from otel_ml.gpu import _driver

    monkeypatch.setattr(_driver, "IDLE_EXIT", 0.05)
    own = _driver.Driver(name="otel_ml-nvml-test")
    assert own.call("a call", lambda: 1, 2.0) == 1
    deadline = time.monotonic() + 5
    while any(t.name == "otel_ml-nvml-test" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(t.name == "otel_ml-nvml-test" for t in threading.enumerate())
    assert own.call("another call", lambda: 2, 2.0) == 2
    with pytest.raises(ZeroDivisionError):  # the call's own error reaches the caller
        own.call("a failing call", lambda: 1 / 0, 2.0)
