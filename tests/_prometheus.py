"""The one Prometheus launcher of the tests: a real Prometheus 2.42 on a free 127.0.0.1 port.

Its config and storage live in the test's temporary directory, and it is
stopped by PID. Two configs: a plain one scraping given targets
(:meth:`Prometheus.scraping`), and the bundled ``collector/prometheus/prometheus.yml``
with its rules, pointed at a test's collector and made faster
(:meth:`Prometheus.bundled`).
"""

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

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_CONFIG = ROOT / "collector" / "prometheus" / "prometheus.yml"
RULES = ROOT / "collector" / "prometheus" / "rules" / "otel-ml.rules.yml"


def require_prometheus() -> str:
    """Path of the ``prometheus`` binary, or skip with the reason (scripts/test.sh installs it)."""
    path = shutil.which("prometheus")
    if path is None:
        pytest.skip("Debian's prometheus package is not installed (scripts/test.sh installs it)")
    return path


class Prometheus:
    """A Prometheus process with exemplar storage, and its HTTP API."""

    def __init__(self, workdir: Path, config: str, *extra_flags: str) -> None:
        self.extra_flags = extra_flags
        self.port = _net.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / f"prometheus-{self.port}.yml"
        self.config.write_text(config)
        self.data = workdir / f"tsdb-{self.port}"
        self.log = workdir / f"prometheus-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def scraping(cls, workdir: Path, targets: list[str], interval: str = "1s") -> Prometheus:
        """Scrape ``targets`` (host:port) every ``interval`` as job ``otel_ml``."""
        config = (
            "global:\n"
            f"  scrape_interval: {interval}\n"
            f"  evaluation_interval: {interval}\n"
            "scrape_configs:\n"
            "  - job_name: otel_ml\n"
            "    static_configs:\n"
            f"      - targets: {json.dumps(targets)}\n"
        )
        return cls(workdir, config)

    @classmethod
    def bundled(cls, workdir: Path, target_port: int, *extra_flags: str) -> Prometheus:
        """The bundled config and rules, scraping a test's collector on ``target_port``, faster.

        The collector keeps a histogram exemplar only until its next export (1 s),
        hence the short scrape interval.
        """
        text = BUNDLED_CONFIG.read_text()
        for old, new in (
            ("127.0.0.1:8889", f"127.0.0.1:{target_port}"),
            ("scrape_interval: 10s", "scrape_interval: 500ms"),
            ("evaluation_interval: 30s", "evaluation_interval: 1s"),
            ("rules/otel-ml.rules.yml", str(RULES)),
        ):
            assert old in text, f"prometheus.yml no longer contains {old!r}"
            text = text.replace(old, new)
        return cls(workdir, text, *extra_flags)

    def start(self) -> None:
        binary = require_prometheus()
        self.proc = _net.start(
            [
                binary,
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.data}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--enable-feature=exemplar-storage",
                *self.extra_flags,
            ],
            log=self.log,
        )
        try:
            _net.wait_for(self._ready, 30, f"Prometheus ready (log: {self.log})")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
        return _net.get(f"{self.url}/-/ready")[0] == 200

    def stop(self) -> None:
        _net.stop(self.proc)
        self.proc = None

    def api(self, path: str, **params: Any) -> Any:
        """The JSON body of ``/api/v1/<path>`` (``status`` and ``data``)."""
        _, _, body = _net.get(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}")
        return json.loads(body)

    def _data(self, path: str, **params: Any) -> Any:
        body = self.api(path, **params)
        assert body.get("status") == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant query's result vector."""
        return self._data("query", query=expr)["result"]  # type: ignore[no-any-return]

    def value(self, expr: str) -> float | None:
        """The value of a query that returns one series, else None."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if len(result) == 1 else None

    def exemplars(self, expr: str, start: float, end: float) -> list[dict[str, Any]]:
        return self._data("query_exemplars", query=expr, start=start, end=end)  # type: ignore[no-any-return]


@contextmanager
def prometheus(tmp_path: Path, targets: list[str], interval: str = "1s") -> Iterator[Prometheus]:
    """A started :meth:`Prometheus.scraping`, stopped at the end of the block."""
    server = Prometheus.scraping(tmp_path, targets, interval)
    server.start()
    try:
        yield server
    finally:
        server.stop()
