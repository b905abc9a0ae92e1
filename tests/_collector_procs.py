"""Real processes for the collector tests: otelcol-ml, Prometheus, and training runs.

Everything binds 127.0.0.1 on free ports, lives in a temporary directory and
is stopped by its PID. Nothing here is a test; test_collector_e2e.py uses it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._net import free_port, stop, wait_for
from tests._prometheus import Prometheus

ROOT = Path(__file__).resolve().parents[1]
COLLECTOR_DIR = ROOT / "collector"
COLLECTOR_BIN = COLLECTOR_DIR / "build" / "otelcol-ml"
RULES = COLLECTOR_DIR / "prometheus" / "rules" / "otel-ml.rules.yml"
DASHBOARD = COLLECTOR_DIR / "grafana" / "dashboards" / "otel-ml.json"
REQUIRE_ENV = "OTEL_ML_REQUIRE_COLLECTOR"


def require_collector() -> Path:
    """The built collector binary; skips (or fails where CI requires it) when it cannot be had."""
    reason = None
    if shutil.which("prometheus") is None:
        reason = "the 'prometheus' binary is not installed (Debian package prometheus)"
    elif not COLLECTOR_BIN.exists():
        if shutil.which("go") is None:
            reason = "Go is not installed, so collector/build.sh cannot build collector/build/otelcol-ml"
        else:
            reason = "collector/build/otelcol-ml is not built: run `bash collector/build.sh`"
    if reason is not None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
        pytest.skip(reason)
    return COLLECTOR_BIN


class Collector:
    """otelcol-ml running otel-collector.yaml on free ports; restartable for outages."""

    def __init__(
        self,
        workdir: Path,
        config: Path = COLLECTOR_DIR / "otel-collector.yaml",
        extra_env: dict[str, str] | None = None,
        serves_metrics: bool = True,
    ) -> None:
        self.config = config
        self.serves_metrics = serves_metrics
        self.grpc_port, self.http_port, self.prom_port = free_port(), free_port(), free_port()
        self.traces_file = workdir / f"{config.stem}-traces.jsonl"
        self.log = workdir / f"{config.stem}.log"
        self.env = {
            **os.environ,
            "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{self.grpc_port}",
            "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{self.http_port}",
            "OTELCOL_PROMETHEUS_ENDPOINT": f"127.0.0.1:{self.prom_port}",
            # No trace backend in the test: the file exporter is what is checked.
            "OTELCOL_TRACES_OTLP_ENDPOINT": f"127.0.0.1:{free_port()}",
            "OTELCOL_TRACES_FILE": str(self.traces_file),
            # The gateways serve their own otelcol_* metrics; a free port, not the default 8888.
            "OTELCOL_TELEMETRY_PORT": str(free_port()),
            # The remote-write gateway's spool: on disk in the test's directory, on a free loopback port.
            "OTELCOL_STORAGE_DIR": str(workdir / f"{config.stem}-storage"),
            "OTELCOL_SPOOL_ENDPOINT": f"127.0.0.1:{free_port()}",
            "OTELCOL_LOG_LEVEL": "warn",
            **(extra_env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def otlp_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(COLLECTOR_BIN), "--config", str(self.config)], env=self.env, stdout=log, stderr=log
            )
        try:
            wait_for(self._ready, 30, f"{self.config.name} listening (log: {self.log})")
        except BaseException:
            self.stop()  # never leave a collector behind a failed start
            raise

    def _ready(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
        port = self.prom_port if self.serves_metrics else self.grpc_port
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    def stop(self) -> None:
        stop(self.proc)
        self.proc = None

    def spans(self) -> list[dict[str, Any]]:
        """Every span in the trace file, with ``traceId`` and attributes flattened."""
        found = []
        if not self.traces_file.exists():
            return found
        for line in self.traces_file.read_text().splitlines():
            for rs in json.loads(line).get("resourceSpans", []):
                for ss in rs.get("scopeSpans", []):
                    for span in ss.get("spans", []):
                        attrs = {a["key"]: next(iter(a["value"].values())) for a in span.get("attributes", [])}
                        found.append({"traceId": span["traceId"], "name": span["name"], "attributes": attrs})
        return found


def training_env(collector: Collector, run: str, instance: str, index: int, export_ms: int = 1000) -> dict[str, str]:
    """Environment of one training worker of the job ``trainer``, exporting OTLP to ``collector``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        {
            "OTEL_ML_RUN_NAME": run,
            "OTEL_SERVICE_NAME": "trainer",
            "OTEL_RESOURCE_ATTRIBUTES": f"service.instance.id={instance}",
            "TF_CONFIG": json.dumps({"task": {"type": "worker", "index": index}}),
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_endpoint,
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_METRIC_EXPORT_INTERVAL": str(export_ms),
            "OTEL_BSP_SCHEDULE_DELAY": "500",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "CUDA_VISIBLE_DEVICES": "",
        }
    )
    return env


def start_training(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    """``opentelemetry-instrument python tests/_collector_maxrss.py examples/keras_train.py ARGS``."""
    instrument = str(Path(sys.executable).parent / "opentelemetry-instrument")
    wrapper, script = ROOT / "tests" / "_collector_maxrss.py", ROOT / "examples" / "keras_train.py"
    cmd = [instrument, sys.executable, str(wrapper), str(script)]
    return subprocess.Popen([*cmd, *args], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen[bytes], timeout: float = 240) -> tuple[int, str]:
    """Wait for a training run; its exit code and its stderr (stdout appended)."""
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, err.decode(errors="replace") + out.decode(errors="replace")


def series_names(stack_prom: Prometheus, match: str) -> Iterator[tuple[str, frozenset[str]]]:
    body = stack_prom.api("series", **{"match[]": match})
    assert body["status"] == "success", body
    for labels in body["data"]:
        yield labels["__name__"], frozenset(labels) - {"__name__"}
