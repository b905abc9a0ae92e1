"""Loopback helpers for tests that start real processes: free ports, polling, scraping."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client.openmetrics.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str, accept: str | None = None, timeout: float = 5.0) -> tuple[int, str, str]:
    """(status, content type, body) of a GET; HTTP errors are returned, not raised."""
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def get_json(url: str) -> Any:
    return json.loads(get(url)[2])


def openmetrics(url: str) -> dict[str, Any]:
    """Parsed OpenMetrics families by name, scraped as Prometheus does."""
    _, _, body = get(url, accept="application/openmetrics-text; version=1.0.0")
    return {family.name: family for family in text_string_to_metric_families(body)}


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.25) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last error
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_error!r})")


def start(args: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> subprocess.Popen[bytes]:
    """Start a process in its own session, so it and its children stop together by PID."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    out = open(log, "wb") if log else subprocess.DEVNULL
    return subprocess.Popen(args, cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """Stop a process we started, by its PID: SIGTERM, then SIGKILL.

    A process started by :func:`start` leads its own session, so its children
    are signalled with it.
    """
    if proc is None or proc.poll() is not None:
        return
    group = os.getpgid(proc.pid) == proc.pid

    def signal_it(sig: int) -> None:
        (os.killpg if group else os.kill)(proc.pid, sig)

    signal_it(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        signal_it(signal.SIGKILL)
        proc.wait(timeout)


def start_example(
    log: Path,
    *,
    instrument: bool,
    slow_step: int,
    slow_seconds: float,
    threshold: float,
    env: dict[str, str] | None = None,
    **flags: int,
) -> tuple[subprocess.Popen[bytes], str]:
    """Run ``examples/keras_train.py`` serving the embedded endpoint on a free port; (process, base URL).

    ``instrument``: under ``opentelemetry-instrument`` (no code change) rather than plain ``python``.
    ``flags``: the example's other options, e.g. ``epochs=2, samples=256, batch_size=32``.
    """
    port = free_port()
    prefix = [str(BIN / "opentelemetry-instrument")] if instrument else []
    args = [*prefix, sys.executable, "examples/keras_train.py", f"--slow-step={slow_step}"]
    args += [f"--slow-seconds={slow_seconds}", "--hold=60"]
    args += [f"--{name.replace('_', '-')}={value}" for name, value in flags.items()]
    full_env = {"OTEL_EXPORTER_PROMETHEUS_PORT": str(port), "OTEL_ML_SLOW_STEP_SECONDS": str(threshold), **(env or {})}
    return start(args, env=full_env, log=log), f"http://127.0.0.1:{port}"
