"""A real Alertmanager 0.25 for tests, its amtool, and a local webhook receiver.

The Alertmanager runs a config derived from collector/alertmanager/alertmanager.yml:
routes, grouping, timings, inhibitions and templates unchanged, every
receiver's channels replaced by one webhook to a receiver on 127.0.0.1, so no
test ever sends anything off the machine. Everything binds 127.0.0.1 on free
ports and is stopped by its PID.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import _net
from tests._collector_procs import COLLECTOR_DIR, REQUIRE_ENV

AM_DIR = COLLECTOR_DIR / "alertmanager"
AM_CONFIG = AM_DIR / "alertmanager.yml"


def require_alertmanager() -> tuple[str, str]:
    """Paths of ``prometheus-alertmanager`` and ``amtool``, or skip (fail where CI requires them)."""
    binary, amtool = shutil.which("prometheus-alertmanager"), shutil.which("amtool")
    if binary is None or amtool is None:
        reason = "Debian's prometheus-alertmanager package (with amtool) is not installed; scripts/test.sh installs it"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
        pytest.skip(reason)
    return binary, amtool


def amtool(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run amtool in collector/alertmanager/ (where the config's template glob is relative to)."""
    _, path = require_alertmanager()
    proc = subprocess.run([path, *args], capture_output=True, text=True, cwd=AM_DIR, check=False, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def local_config(webhook_base: str, token_file: Path) -> str:
    """The shipped config with each receiver's channels replaced by ``webhook_base/<receiver>``."""
    config = yaml.safe_load(AM_CONFIG.read_text())
    config["templates"] = [str(AM_DIR / t) for t in config["templates"]]
    for key in [k for k in config["global"] if k.startswith(("smtp_", "slack_"))]:
        del config["global"][key]
    shipped = config["receivers"]
    config["receivers"] = [
        {
            "name": r["name"],
            "webhook_configs": [
                {
                    "url": f"{webhook_base}/{r['name']}",
                    "send_resolved": True,
                    "http_config": {"authorization": {"credentials_file": str(token_file)}},
                }
            ],
        }
        for r in shipped
    ]
    return yaml.safe_dump(config, sort_keys=False)


@dataclass
class Notification:
    """One POST the webhook receiver got: when, on which path, with which token and payload."""

    at: float
    path: str
    authorization: str
    payload: dict[str, Any]


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that records every Alertmanager webhook POST."""

    def __init__(self) -> None:
        self.received: list[Notification] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                auth = self.headers.get("Authorization", "")
                received.append(Notification(time.time(), self.path, auth, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class Alertmanager:
    """A running Alertmanager: its URL, its v2 API and amtool pointed at it."""

    def __init__(self, url: str, proc: subprocess.Popen[bytes]) -> None:
        self.url = url
        self.proc = proc

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        """``/api/v2/alerts`` (silenced and inhibited included), filtered by label equality."""
        query = "&".join(f'filter={name}="{value}"' for name, value in filters.items())
        status, _, body = _net.get(f"{self.url}/api/v2/alerts?{query}")
        assert status == 200, body
        return json.loads(body)  # type: ignore[no-any-return]

    def amtool(self, *args: str) -> str:
        return amtool(*args, f"--alertmanager.url={self.url}").stdout


@contextmanager
def alertmanager(workdir: Path, config_text: str) -> Iterator[Alertmanager]:
    """Start Alertmanager with ``config_text`` on a free port, with no cluster (gossip) listener."""
    binary, _ = require_alertmanager()
    config = workdir / "alertmanager.yml"
    config.write_text(config_text)
    port = _net.free_port()
    proc = _net.start(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={workdir / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        log=workdir / "alertmanager.log",
    )
    server = Alertmanager(f"http://127.0.0.1:{port}", proc)
    try:
        _net.wait_for(lambda: _net.get(f"{server.url}/-/ready")[0] == 200, 30, "Alertmanager to be ready")
        yield server
    finally:
        _net.stop(proc)
