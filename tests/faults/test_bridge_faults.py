"""The TensorBoard bridge against hostile and broken logdirs: it never crashes and never loses data."""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client.parser import text_string_to_metric_families

from otel_ml.distro import _sdk_internals, cli
from otel_ml.distro.tensorboard_bridge import register
from otel_ml.distro.tensorboard_bridge._bridge import Bridge
from tests._net import ROOT, free_port, get, stop, wait_for
from tests._otlp_sink import OtlpReceiver
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
        found: list[bytes] = []
        handle, offset, reads = io.BytesIO(data), 0, 0
        while True:
            chunk = read_records(handle, offset, budget)
            found, offset, reads = found + chunk.records, chunk.offset, reads + 1
            if not chunk.full:
                break
        assert (found, chunk.tail) == (expected, tail)
        assert reads <= len(data) // min(budget, len(data)) + 2


# --- delivery, restarts, signals (real bridge processes, a real OTLP/HTTP receiver) -------------------


def _bridge_argv(logs: Path, state: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "otel_ml.distro.cli", "tensorboard", str(logs), "--state-dir", str(state), *extra]


def _start_bridge(logs: Path, state: Path, env: dict[str, str], err: Path) -> subprocess.Popen[bytes]:
    full = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    full.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    with err.open("wb") as handle:
        return subprocess.Popen(
            _bridge_argv(logs, state, "--interval", "0.2"), cwd=ROOT, env=full, stdout=handle, stderr=handle
        )


def _once(logs: Path, state: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env}
    full.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    return subprocess.run(
        _bridge_argv(logs, state, "--once"), cwd=ROOT, env=full, capture_output=True, text=True, timeout=120
    )


def _saved_records(state: Path) -> dict[str, int]:
    path = state / "bridge_state.json"
    if not path.exists():
        return {}
    files = json.loads(path.read_text())["files"]
    return {os.path.basename(os.path.dirname(name)): entry["records"] for name, entry in files.items()}


def _append(path: Path, values: list[float], start: int) -> None:
    with path.open("ab") as handle:
        handle.write(b"".join(frame(scalar("loss", value, start + n)) for n, value in enumerate(values)))


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    found = OtlpReceiver()
    yield found
    found.close()


def _events(receiver: OtlpReceiver) -> dict[str, int]:
    return {dict(key)["ml.run.name"]: value for key, value in receiver.last("ml.tensorboard.bridge.events").items()}


@pytest.mark.slow
def test_sigterm_while_the_collector_is_down_exits_1_and_a_restart_sends_the_values(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    write_run(tmp_path / "logs" / "run", VALUES)
    state = tmp_path / "state"
    receiver.down = True
    proc = _start_bridge(tmp_path / "logs", state, receiver.env(), tmp_path / "err")
    try:
        wait_for(lambda: receiver.refused >= 1 or None, 60, "an export attempt")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 1
    finally:
        stop(proc)
    err = (tmp_path / "err").read_text()
    line = (
        "otel-ml tensorboard: stopped with 3 summary values read but not delivered; the state keeps them "
        f"unexported, so a restart with --state-dir {state} sends them"
    )
    assert err.count(line) == 1 and "Traceback" not in err
    assert _saved_records(state) == {}  # nothing marked exported
    receiver.down = False
    first = _once(tmp_path / "logs", state, receiver.env())
    assert first.returncode == 0, first.stderr
    assert _events(receiver) == {"run": 3}
    assert [v for _, v in receiver.last("ml.tensorboard.scalar").items()] == [0.125]
    receiver.requests.clear()
    again = _once(tmp_path / "logs", state, receiver.env())
    assert again.returncode == 0, again.stderr
    assert _events(receiver) == {}  # delivered once, never twice


@pytest.mark.slow
def test_sigkill_before_delivery_loses_nothing_and_repeats_nothing(tmp_path: Path, receiver: OtlpReceiver) -> None:
    path = write_run(tmp_path / "logs" / "run", VALUES)
    state = tmp_path / "state"
    proc = _start_bridge(tmp_path / "logs", state, receiver.env(), tmp_path / "err")
    try:
        wait_for(lambda: _events(receiver) == {"run": 3} or None, 60, "the first 3 values delivered")
        wait_for(lambda: _saved_records(state) == {"run": 3} or None, 30, "the state saved after delivery")
        receiver.down = True
        _append(path, [4.0, 5.0], start=3)
        wait_for(lambda: receiver.refused >= 1 or None, 60, "the appended values' export attempt")
        proc.kill()
        proc.wait(30)
    finally:
        stop(proc)
    assert _saved_records(state) == {"run": 3}  # read, not delivered: not saved
    receiver.down = False
    receiver.requests.clear()
    restarted = _once(tmp_path / "logs", state, receiver.env())
    assert restarted.returncode == 0, restarted.stderr
    assert _events(receiver) == {"run": 2}  # exactly the two undelivered values
    assert [v for _, v in receiver.last("ml.tensorboard.scalar").items()] == [5.0]
    assert _saved_records(state) == {"run": 5}


@pytest.mark.slow
def test_embedded_endpoint_saves_after_a_scrape_and_sigterm_says_what_was_not_scraped(tmp_path: Path) -> None:
    path = write_run(tmp_path / "logs" / "run", VALUES)
    state, port = tmp_path / "state", free_port()
    env = {"OTEL_EXPORTER_PROMETHEUS_PORT": str(port), "OTEL_METRICS_EXPORTER": "otel_ml_prometheus"}
    url = f"http://127.0.0.1:{port}/metrics"

    def scraped_events() -> float | None:
        try:
            _, _, text = get(url)
        except OSError:
            return None
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "ml_tensorboard_bridge_events_total" and sample.labels["ml_run_name"] == "run":
                    return sample.value
        return None

    proc = _start_bridge(tmp_path / "logs", state, env, tmp_path / "err")
    try:
        assert wait_for(scraped_events, 60, "a scrape with the first values") == 3
        # Prometheus goes on scraping: a scrape after the read is the delivery that saves the state.
        wait_for(lambda: scraped_events() and _saved_records(state) == {"run": 3}, 30, "the state saved")
        _append(path, [4.0, 5.0], start=3)  # read, but nobody scrapes before SIGTERM
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 1
    finally:
        stop(proc)
    assert "stopped with 2 summary values read but not delivered" in (tmp_path / "err").read_text()
    assert _saved_records(state) == {"run": 3}
    proc = _start_bridge(tmp_path / "logs", state, env, tmp_path / "err2")
    try:
        assert wait_for(scraped_events, 60, "a scrape after the restart") == 2
        wait_for(lambda: scraped_events() and _saved_records(state) == {"run": 5}, 30, "the state saved")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0  # everything read was scraped
    finally:
        stop(proc)


@pytest.mark.slow
def test_port_taken_exits_4_with_one_line_and_marks_nothing(tmp_path: Path) -> None:
    write_run(tmp_path / "logs" / "run", VALUES)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {"OTEL_EXPORTER_PROMETHEUS_PORT": str(taken.getsockname()[1]), "OTEL_METRICS_EXPORTER": ""}
        full = {**os.environ, **env}
        done = subprocess.run(
            _bridge_argv(tmp_path / "logs", tmp_path / "state"),
            cwd=ROOT,
            env=full,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 4
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(
        "otel-ml tensorboard: nowhere to deliver the values: cannot serve /metrics on 127.0.0.1:"
    )
    assert "Address already in use" in lines[0] and "OTEL_EXPORTER_PROMETHEUS_PORT" in lines[0]
    assert not (tmp_path / "state").exists()


def test_second_bridge_on_one_state_dir_exits_3_with_one_line(
    telemetry: Telemetry, tmp_path: Path, capsys: Any
) -> None:
    write_run(tmp_path / "logs" / "run", VALUES)
    first = _bridge(telemetry, tmp_path / "logs", tmp_path / "state")
    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    argv = ["tensorboard", str(tmp_path / "logs"), "--once", "--state-dir", str(tmp_path / "state")]
    try:
        assert _run_cli(argv, provider) == 3
    finally:
        first.close()
    assert capsys.readouterr().err == (
        f"otel-ml tensorboard: state directory {tmp_path / 'state'} is in use by another otel-ml tensorboard "
        f"(pid {os.getpid()}); two bridges on one state would export every value twice: stop the other one, or "
        "give this one its own --state-dir\n"
    )
    assert _run_cli(argv, provider) == 0  # released: the next one runs


# --- what the logdir holds: links, deleted runs, rewritten files, names in other encodings -----------


def test_symlinks_are_not_followed_by_default(telemetry: Telemetry, tmp_path: Path, caplog: Any) -> None:
    logs = tmp_path / "logs"
    write_run(logs / "run", VALUES)
    write_run(tmp_path / "elsewhere" / "theirs", [9.0, 9.0])  # another user's runs
    (logs / "escape").symlink_to(tmp_path / "elsewhere")
    (logs / "disk").symlink_to("/")
    (logs / "alias").symlink_to(logs / "run")
    bridge = _bridge(telemetry, logs, tmp_path / "state")
    with caplog.at_level(logging.WARNING):
        assert bridge.poll(final=True) == 3
        assert bridge.poll(final=True) == 0
    assert _exported(telemetry) == {"run": 3}
    assert _warnings(caplog, "is a symbolic link; it is not followed (pass --follow-symlinks") == 3  # once each


def test_followed_symlinks_stay_under_the_logdirs(telemetry: Telemetry, tmp_path: Path, caplog: Any) -> None:
    logs = tmp_path / "logs"
    write_run(logs / "real" / "run", VALUES)
    write_run(tmp_path / "elsewhere" / "theirs", [9.0, 9.0])
    (logs / "escape").symlink_to(tmp_path / "elsewhere")
    (logs / "disk").symlink_to("/")  # followed, this would walk the whole disk at every poll
    (logs / "inside").symlink_to(logs / "real")  # a link that stays inside is followed
    write_run(tmp_path / "kept" / "linked", [1.0])
    (logs / "real" / "file_link").mkdir()
    (logs / "real" / "file_link" / "events.out.tfevents.2.host").symlink_to(
        tmp_path / "elsewhere" / "theirs" / "events.out.tfevents.1.host"
    )
    bridge = Bridge([str(logs)], str(tmp_path / "state"), telemetry.meter_provider, follow_symlinks=True)
    with caplog.at_level(logging.WARNING):
        assert bridge.poll(final=True) == 3
        assert bridge.poll(final=True) == 0
    bridge.close()
    assert _exported(telemetry) == {"real/run": 3}  # the run reached twice is named by its real path
    assert _warnings(caplog, "outside the logdirs; it is not followed") == 3
    # A directory listed as a LOGDIR is inside: links into it are followed.
    both = Bridge(
        [str(logs), str(tmp_path / "elsewhere")], str(tmp_path / "state2"), MeterProvider(), follow_symlinks=True
    )
    assert both.poll(final=True) == 3 + 2 + 0  # the file link reaches a file already found: once
    both.close()


@pytest.mark.parametrize("forced", [False, True], ids=["sdk_internals", "public_api_fallback"])
def test_deleted_run_is_forgotten_and_logged_once(
    telemetry: Telemetry, tmp_path: Path, caplog: Any, forced: bool
) -> None:
    logs, state = tmp_path / "logs", tmp_path / "state"
    write_run(logs / "kept", VALUES)
    write_run(logs / "gone", VALUES)
    bridge = _bridge(telemetry, logs, state)
    assert bridge.poll() == 6
    shutil.rmtree(logs / "gone")
    if forced:  # an SDK whose storage cannot be read: the run is forgotten, its series stay until a restart
        with _sdk_internals.forced_fallbacks(_sdk_internals.FORGET_SERIES):
            assert bridge.poll() == 0
        assert {p.attributes["ml.run.name"] for p in telemetry.points("ml.tensorboard.scalar")} == {"kept", "gone"}
        bridge.close()
        return
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert bridge.poll() == 0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "otel-ml tensorboard: the event files of run 'gone' are gone; the run is forgotten and its series stop"
    ]
    assert _saved_records(state) == {"kept": 3}
    for name in ("ml.tensorboard.scalar", "ml.tensorboard.writes", "ml.tensorboard.bridge.events"):
        assert {p.attributes["ml.run.name"] for p in telemetry.points(name)} == {"kept"}, name
    write_run(logs / "gone", [7.0])  # a new run of that name is a new run
    assert bridge.poll() == 1
    bridge.close()


def _values(telemetry: Telemetry) -> list[float]:
    return [p.value for p in telemetry.points("ml.tensorboard.scalar")]


@pytest.mark.parametrize("how", ["shorter", "replaced", "rewritten_in_place", "after_restart"])
def test_rewritten_event_file_is_read_from_the_start(
    telemetry: Telemetry, tmp_path: Path, caplog: Any, how: str
) -> None:
    logs, state = tmp_path / "logs", tmp_path / "state"
    path = write_run(logs / "run", VALUES)
    bridge = _bridge(telemetry, logs, state)
    assert bridge.poll() == 3
    new = {"shorter": [7.0, 8.0], "replaced": [7.0, 8.0, 9.0, 10.0]}.get(how, [7.0, 8.0, 9.0, 10.0, 11.0])
    raw = b"".join(frame(scalar("loss", value, step)) for step, value in enumerate(new))
    if how == "replaced":  # a new file put in its place: another inode
        (logs / "run" / "tmp").write_bytes(raw)
        os.replace(logs / "run" / "tmp", path)
    else:
        with path.open("r+b") as handle:  # same inode
            handle.truncate(0)
            handle.write(raw)
    if how == "after_restart":
        bridge.close()
        telemetry.reader.get_metrics_data()
        bridge = _bridge(telemetry, logs, state)
    with caplog.at_level(logging.WARNING):
        assert bridge.poll() == len(new)
        assert bridge.poll() == 0
    bridge.close()
    assert _values(telemetry) == [new[-1]]
    assert _warnings(caplog, "was rewritten") == 1
    assert _saved_records(state) == {"run": len(new)}


@pytest.mark.slow
def test_latin1_run_directory_keeps_its_run_name_over_otlp_and_on_metrics(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    logs = tmp_path / "logs"
    write_run(Path(os.fsdecode(bytes(logs) + b"/caf\xe9")), VALUES)
    write_run(logs / "plain", VALUES)
    done = _once(logs, tmp_path / "state", receiver.env())
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    points = [p for request in receiver.requests for p in request if p[0].startswith("ml.tensorboard")]
    runs = {attrs.get("ml.run.name") for name, attrs, _ in points if name != "ml.tensorboard.bridge.pending"}
    assert runs == {"caf\\xe9", "plain"}  # the undecodable byte as an escape, on every point
    assert _events(receiver) == {"caf\\xe9": 3, "plain": 3}

    from otel_ml.distro.endpoint._reader import OtelMLPrometheusMetricReader

    prom = OtelMLPrometheusMetricReader(host="127.0.0.1", port=0)
    try:
        bridge = Bridge([str(logs)], str(tmp_path / "state2"), MeterProvider(metric_readers=[prom]))
        assert bridge.poll(final=True) == 6
        bridge.close()
        status, _, text = get(prom.url)
    finally:
        prom.shutdown()
    assert status == 200
    samples = [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "ml_tensorboard_bridge_events_total"
    ]
    assert {s.labels["ml_run_name"]: s.value for s in samples} == {"caf\\xe9": 3.0, "plain": 3.0}


@pytest.mark.parametrize("kind", ["fifo", "huge", "not_json"])
def test_a_hostile_file_under_a_markers_name_neither_hangs_the_bridge_nor_hides_the_run(
    telemetry: Telemetry, tmp_path: Path, kind: str
) -> None:
    """A FIFO named like a marker blocked ``open()`` for ever (the bridge hung); a huge one was read whole."""
    import threading

    from otel_ml._summary._files import marker_path

    path = write_run(tmp_path / "logs" / "run", [1.0, 2.0])
    marker = marker_path(str(path))
    if kind == "fifo":
        os.mkfifo(marker)
    elif kind == "huge":
        with open(marker, "w", encoding="utf-8") as handle:
            handle.write('{"host": "h", "pid": 1, "run": "' + "x" * 100_000 + '"}')
    else:
        Path(marker).write_bytes(b"\xff\xfe not a marker")
    bridge = _bridge(telemetry, tmp_path / "logs", tmp_path / "state")
    done: list[int] = []
    thread = threading.Thread(target=lambda: done.append(bridge.poll()), daemon=True)
    thread.start()
    thread.join(10)
    assert done == [2], "the poll hung or skipped the run"
    assert _exported(telemetry) == {"run": 2}


def test_a_marker_is_never_written_through_a_link_or_into_a_fifo_left_under_its_name(tmp_path: Path) -> None:
    """A neighbour in a shared logdir pre-creates the marker's name (``.otel_ml-<hash of the event file name>``).

    A symbolic link there made the program overwrite the link's target (any file the user may write) with JSON;
    a FIFO there blocked the program's ``create_file_writer`` (the marker is left when the writer is made) until
    someone read it. Now the marker is written to a file of our own and renamed over whatever was there, with the
    event file's permissions (so a bridge running as another user can read it).
    """
    import threading

    from otel_ml._summary._files import marker_path, read_marker, write_marker

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    linked = write_run(tmp_path / "logs" / "a", [1.0])
    os.chmod(linked, 0o640)
    os.symlink(victim, marker_path(str(linked)))
    write_marker(str(linked), {"host": "h", "pid": 1, "run": "a"})
    assert victim.read_text() == "precious\n"
    assert read_marker(str(linked)) == {"file": linked.name, "host": "h", "pid": 1, "run": "a"}
    assert os.stat(marker_path(str(linked))).st_mode & 0o777 == 0o640

    piped = write_run(tmp_path / "logs" / "b", [1.0])
    os.mkfifo(marker_path(str(piped)))
    thread = threading.Thread(target=write_marker, args=(str(piped), {"run": "b"}), daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "write_marker blocked on a FIFO"
    assert read_marker(str(piped)) == {"file": piped.name, "run": "b"}
    # Nothing else is left behind: the event files and their markers only.
    assert sorted(p.name.startswith(".otel_ml-") for p in (tmp_path / "logs").rglob("*") if p.is_file()) == [
        False,
        False,
        True,
        True,
    ]
