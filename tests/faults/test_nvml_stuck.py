"""A wedged GPU driver (the fake NVML, one call that never returns) holds no scrape, no instrument() and no exit.

A real program under ``otel_ml.instrument()`` with the embedded endpoint; the
fake NVML is loaded the way a test loads it into ``otel-ml gpu``
(``OTEL_ML_GPU_NVML_MODULE``) and blocks either the power read of the first
collection or ``nvmlInit`` itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests import _net

pytestmark = pytest.mark.slow

PROGRAM = """
import json, logging, sys, time
logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
import otel_ml
started = time.monotonic()
otel_ml.instrument()
took = time.monotonic() - started
from otel_ml.distro.endpoint import embedded_url
print(json.dumps({"instrument": took, "url": embedded_url()}), flush=True)
sys.stdin.readline()
print("done", flush=True)
"""

STUCK_READ = (
    "WARNING otel_ml.gpu._driver: otel_ml: NVML did not answer within 2 s (reading the GPUs); GPU metrics are left "
    "out of collections until it answers. The program and the /metrics endpoint do not wait for it."
)
STUCK_INIT = (
    "WARNING otel_ml.gpu: otel_ml: NVML has not answered within 2 s (nvmlInit or listing the GPUs); the program goes "
    "on and GPU metrics start when NVML answers"
)


def run(blocked: str, after: int) -> tuple[dict[str, float | str], list[tuple[float, int, str]], float, int, str]:
    """(what the program said, [(seconds, status, body)] of 3 scrapes and /slow-steps, exit seconds, code, stderr)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(_net.ROOT),
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(_net.free_port()),
        "OTEL_ML_GPU_NVML_MODULE": "tests.fake_nvml",
        "OTEL_ML_GPU_ALL_DEVICES": "true",
        "FAKE_NVML_BLOCK": blocked,
        "FAKE_NVML_BLOCK_AFTER": str(after),
        "OTEL_ML_EXIT_TIMEOUT": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", PROGRAM],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None and proc.stderr is not None
        said = json.loads(proc.stdout.readline())
        url = str(said["url"])
        answers = []
        for path in (url, url, url, url.replace("/metrics", "/slow-steps")):
            started = time.monotonic()
            status, _, body = _net.get(path, timeout=30)
            answers.append((time.monotonic() - started, status, body))
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "done\n"
        finished = time.monotonic()
        code = proc.wait(60)
        return said, answers, time.monotonic() - finished, code, proc.stderr.read()
    finally:
        _net.stop(proc)  # type: ignore[arg-type]


def gpu_series(body: str) -> list[str]:
    return [line for line in body.splitlines() if line.startswith(("hw_", "ml_gpu_"))]


def otel_ml_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "otel_ml" in line]


def test_a_read_that_never_returns_holds_no_scrape_and_no_exit() -> None:
    # The probe at instrument time reads the power of both GPUs; the first scrape's read of GPU 0 hangs.
    said, answers, exit_took, code, err = run("nvmlDeviceGetPowerUsage", after=2)
    assert float(said["instrument"]) < 1.5
    (first, s1, b1), (second, s2, b2), (third, s3, b3), (slow_steps, s4, b4) = answers
    assert (s1, s2, s3, s4) == (200, 200, 200, 200)
    assert 2.0 <= first < 3.5  # one read deadline (2 s), then the answer without GPU points
    assert second < 1.0 and third < 1.0  # the hung call is not waited for again
    assert gpu_series(b1) == gpu_series(b2) == gpu_series(b3) == []
    assert "process_cpu_time_seconds_total" in b3  # the other series are served as usual
    assert slow_steps < 1.0 and json.loads(b4) is not None
    assert code == 0
    assert exit_took < 1.0 + 1.5  # OTEL_ML_EXIT_TIMEOUT=1 bounds it; nothing joins the NVML thread
    assert otel_ml_lines(err) == [STUCK_READ]


def test_an_nvml_init_that_never_returns_holds_neither_instrument_nor_exit() -> None:
    said, answers, exit_took, code, err = run("nvmlInit", after=0)
    assert 2.0 <= float(said["instrument"]) < 3.5  # START_WAIT (2 s), then the program goes on
    assert [status for _, status, _ in answers] == [200, 200, 200, 200]
    assert all(took < 1.0 for took, _, _ in answers)
    assert all(gpu_series(body) == [] for _, _, body in answers[:3])
    assert code == 0
    assert exit_took < 1.0 + 1.5
    assert otel_ml_lines(err) == [STUCK_INIT]
