"""The TensorBoard bridge against hostile and broken logdirs: it never crashes and never loses data."""

from __future__ import annotations

import argparse
import logging
import os
import resource
import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_ml.distro import cli
from otel_ml.distro.tensorboard_bridge import register
from otel_ml.distro.tensorboard_bridge._bridge import Bridge
from tests._telemetry import Telemetry
from tests.faults._records import frame, scalar, string_under_scalars, write_run

VALUES = [0.5, 0.25, 0.125]


def _bridge(telemetry: Telemetry, logs: Path, state: Path) -> Bridge:
    return Bridge([str(logs)], str(state), telemetry.meter_provider)


def _exported(telemetry: Telemetry) -> dict[str, float]:
    return {p.attributes["ml.run.name"]: p.value for p in telemetry.points("ml.tensorboard.bridge.events")}


def _warnings(caplog: Any, text: str) -> int:
    return sum(text in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


def test_record_header_claiming_a_terabyte_is_corrupt_not_a_crash(
    telemetry: Telemetry, tmp_path: Path, caplog: Any
) -> None:
    path = write_run(tmp_path / "logs" / "run", VALUES)
    header = struct.pack("<Q", 1 << 40)
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    with path.open("ab") as handle:  # a header whose own checksum holds: only the size cap catches it
        handle.write(header + struct.pack("<I", masked_crc32c(header)) + b"x" * 64)
    bridge = _bridge(telemetry, tmp_path / "logs", tmp_path / "state")
    with caplog.at_level(logging.WARNING):
        assert bridge.poll(final=True) == 3
        assert bridge.poll(final=True) == 0
    assert _exported(telemetry) == {"run": 3}
    assert {p.attributes["ml.run.name"]: p.value for p in telemetry.points("ml.tensorboard.bridge.bad_files")} == {
        "run": 1
    }
    assert _warnings(caplog, "is corrupt after byte") == 1


def test_corrupt_payload_skips_that_record_only(telemetry: Telemetry, tmp_path: Path, caplog: Any) -> None:
    records = [frame(scalar("loss", value, step)) for step, value in enumerate(VALUES)]
    broken = bytearray(records[1])
    broken[20] ^= 0xFF  # inside the payload: its checksum fails, the header still frames it
    (tmp_path / "logs" / "run").mkdir(parents=True)
    (tmp_path / "logs" / "run" / "events.out.tfevents.1.h").write_bytes(records[0] + bytes(broken) + records[2])
    bridge = _bridge(telemetry, tmp_path / "logs", tmp_path / "state")
    with caplog.at_level(logging.WARNING):
        assert bridge.poll(final=True) == 2
    assert [p.value for p in telemetry.points("ml.tensorboard.scalar")] == [0.125]
    assert _warnings(caplog, "has a corrupt record") == 1


def test_writer_paused_mid_record_waits_and_loses_nothing(telemetry: Telemetry, tmp_path: Path, caplog: Any) -> None:
    path = write_run(tmp_path / "logs" / "live", VALUES[:2])
    last = frame(scalar("loss", VALUES[2], 2))
    with path.open("ab") as handle:
        handle.write(last[:10])
    bridge = _bridge(telemetry, tmp_path / "logs", tmp_path / "state")
    with caplog.at_level(logging.WARNING):
        assert bridge.poll() == 2
        assert bridge.poll() == 0  # still paused: not corrupt, nothing reported
        with path.open("ab") as handle:
            handle.write(last[10:])
        assert bridge.poll() == 1
    assert caplog.records == []
    assert telemetry.points("ml.tensorboard.bridge.bad_files") == []
    assert _exported(telemetry) == {"live": 3}


def test_symlink_loop_exports_each_real_file_once(telemetry: Telemetry, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    write_run(logs / "run", VALUES)
    (logs / "run" / "loop").symlink_to(logs)  # logs/run/loop/run/loop/... forever
    (logs / "alias").symlink_to(logs / "run")  # the same run under a second name
    bridge = _bridge(telemetry, logs, tmp_path / "state")
    assert bridge.poll(final=True) == 3
    assert bridge.poll(final=True) == 0
    assert _exported(telemetry) == {"run": 3}  # named by its real directory


@contextmanager
def _unprivileged() -> Iterator[None]:
    """Act as ``nobody`` when running as root (root reads a mode-000 directory anyway)."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A temporary directory that ``nobody`` may enter (pytest's own is private to its user)."""
    with tempfile.TemporaryDirectory() as name:
        os.chmod(name, 0o777)
        yield Path(name)


def test_unreadable_subdirectory_is_skipped_with_one_warning(telemetry: Telemetry, open_dir: Path, caplog: Any) -> None:
    logs = open_dir / "logs"
    write_run(logs / "ok", VALUES)
    write_run(logs / "locked", VALUES)
    for directory in (logs, logs / "ok"):
        os.chmod(directory, 0o755)
    os.chmod(logs / "locked", 0)
    (open_dir / "state").mkdir(mode=0o777)
    os.chmod(open_dir / "state", 0o777)
    try:
        with _unprivileged(), caplog.at_level(logging.WARNING):
            bridge = _bridge(telemetry, logs, open_dir / "state")
            assert bridge.poll() == 3
            assert bridge.poll() == 0
    finally:
        os.chmod(logs / "locked", 0o755)
    assert _exported(telemetry) == {"ok": 3}
    assert _warnings(caplog, "cannot list") == 1


def test_more_event_files_than_descriptors(telemetry: Telemetry, tmp_path: Path) -> None:
    runs = 200
    for index in range(runs):
        write_run(tmp_path / "logs" / f"run{index:03d}", VALUES)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = len(os.listdir("/proc/self/fd")) + 20  # far fewer descriptors than event files
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        bridge = _bridge(telemetry, tmp_path / "logs", tmp_path / "state")
        assert bridge.poll(final=True) == 3 * runs
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert len(_exported(telemetry)) == runs


def _run_cli(argv: list[str], provider: MeterProvider | None = None) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return int(args.handler(args, meter_provider=provider))


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("infinity", "is unreadable"),
        ("negative", "is unreadable"),
        ("parent_is_a_file", "cannot be created or written"),
        ("read_only", "cannot be created or written"),
    ],
)
def test_state_problems_exit_3_with_a_clear_message(open_dir: Path, capsys: Any, case: str, message: str) -> None:
    write_run(open_dir / "logs" / "run", VALUES)
    state = open_dir / "state"
    if case in ("infinity", "negative"):
        state.mkdir()
        count = "Infinity" if case == "infinity" else "-5"
        (state / "bridge_state.json").write_text('{"version": 1, "files": {"x": {"records": ' + count + "}}}")
    elif case == "parent_is_a_file":
        (open_dir / "file").write_text("")
        state = open_dir / "file" / "state"
    else:
        state.mkdir(mode=0o555)
        os.chmod(state, 0o555)
    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    argv = ["tensorboard", str(open_dir / "logs"), "--once", "--state-dir", str(state)]
    if case == "read_only":
        with _unprivileged():
            code = _run_cli(argv, provider)
    else:
        code = _run_cli(argv, provider)
    assert code == 3
    err = capsys.readouterr().err
    assert err.startswith("otel-ml tensorboard: ") and message in err and "Traceback" not in err


def test_missing_state_dir_is_created(tmp_path: Path) -> None:
    write_run(tmp_path / "logs" / "run", VALUES)
    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    state = tmp_path / "a" / "b"
    assert _run_cli(["tensorboard", str(tmp_path / "logs"), "--once", "--state-dir", str(state)], provider) == 0
    assert (state / "bridge_state.json").exists()


def test_string_under_scalars_skips_only_that_value(telemetry: Telemetry, tmp_path: Path, caplog: Any) -> None:
    records = [scalar("loss", 1.0, 0), string_under_scalars("loss", 1), scalar("loss", 2.0, 2), scalar("loss", 3.0, 3)]
    (tmp_path / "logs" / "run").mkdir(parents=True)
    (tmp_path / "logs" / "run" / "events.out.tfevents.1.h").write_bytes(b"".join(frame(r) for r in records))
    bridge = _bridge(telemetry, tmp_path / "logs", tmp_path / "state")
    with caplog.at_level(logging.WARNING):
        assert bridge.poll(final=True) == 3
    assert [p.value for p in telemetry.points("ml.tensorboard.scalar")] == [3.0]
    assert [p.value for p in telemetry.points("ml.tensorboard.writes")] == [3]
    assert _warnings(caplog, "does not fit plugin 'scalars'") == 1


def test_once_with_only_the_embedded_endpoint_refuses(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("OTEL_METRICS_EXPORTER", raising=False)
    write_run(tmp_path / "logs" / "run", VALUES)
    assert cli.main(["tensorboard", str(tmp_path / "logs"), "--once", "--state-dir", str(tmp_path / "s")]) == 2
    assert "only metrics exporter is the embedded /metrics endpoint" in capsys.readouterr().err
    assert not (tmp_path / "s" / "bridge_state.json").exists()  # nothing recorded as exported


@pytest.mark.parametrize("budget", [1, 20, 100, 5000, 1 << 20])
def test_reads_of_any_size_frame_the_same_records(budget: int) -> None:
    import io

    from otel_ml._summary._records import read_records

    records = [bytes([n]) * size for n, size in enumerate((5, 100, 3000, 7, 50))]
    raw = b"".join(frame(r) for r in records)
    for data, expected, tail in ((raw, records, "end"), (raw[:-60], records[:-1], "partial")):
        handle, offset, found, reads = io.BytesIO(data), 0, [], 0
        while True:
            chunk = read_records(handle, offset, budget)
            found, offset, reads = found + chunk.records, chunk.offset, reads + 1
            if not chunk.full:
                break
        assert (found, chunk.tail) == (expected, tail)
        assert reads <= len(data) // min(budget, len(data)) + 2
