"""A real Prometheus server for tests: free port, temporary config and storage, stopped by PID."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests import _net


def require_prometheus() -> str:
    """Path of the ``prometheus`` binary, or skip with the reason (scripts/test.sh installs it)."""
    path = shutil.which("prometheus")
    if path is None:
        pytest.skip("Debian's prometheus package is not installed (scripts/test.sh installs it)")
    return path


class Prometheus:
    """A running Prometheus and its HTTP API."""

    def __init__(self, base: str, proc: subprocess.Popen[bytes]) -> None:
        self.base = base
        self.proc = proc

    def api(self, path: str, **params: Any) -> Any:
        url = f"{self.base}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        status, _, body = _net.get(url)
        payload = json.loads(body)
        if payload.get("status") != "success":
            raise AssertionError(f"{path} {params} failed ({status}): {payload}")
        return payload["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query result vector."""
        return self.api("query", query=expr)["result"]  # type: ignore[no-any-return]

    def exemplars(self, expr: str, start: float, end: float) -> list[dict[str, Any]]:
        return self.api("query_exemplars", query=expr, start=start, end=end)  # type: ignore[no-any-return]


@contextmanager
def prometheus(tmp_path: Path, targets: list[str], interval: str = "1s") -> Iterator[Prometheus]:
    """Start Prometheus scraping ``targets`` (host:port) every ``interval``, with exemplar storage."""
    binary = require_prometheus()
    port = _net.free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n"
        f"  scrape_interval: {interval}\n"
        f"  evaluation_interval: {interval}\n"
        "scrape_configs:\n"
        "  - job_name: otel_ml\n"
        "    static_configs:\n"
        f"      - targets: {json.dumps(targets)}\n"
    )
    proc = _net.start(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--enable-feature=exemplar-storage",
        ],
        log=tmp_path / "prometheus.log",
    )
    server = Prometheus(f"http://127.0.0.1:{port}", proc)
    try:
        _net.wait_for(lambda: _net.get(server.base + "/-/ready")[0] == 200, 30, "Prometheus to be ready")
        yield server
    finally:
        _net.stop(proc)
