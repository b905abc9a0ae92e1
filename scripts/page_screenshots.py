"""Screenshots of the live page for the README: the demo's training, and ``otel-ml gpu`` on the fake NVML.

    PYTHONPATH=$PWD .venv/bin/python scripts/page_screenshots.py docs/

Runs what ``scripts/demo.sh`` runs (examples/keras_train.py, a sample a
second) on a free port, plus a NaN run, and photographs the page in Debian's
headless Chromium once each fit has finished.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests._browser import chromium
from tests._net import free_port, get_json, start, start_example, stop, wait_for


def _shoot(url: str, out: Path, settle: float, height: int = 1000) -> None:
    with chromium(height=height) as driver:
        driver.get(url)
        wait_for(lambda: driver.execute_script("return window.otelMl && window.otelMl.updated"), 30, "the page")
        time.sleep(settle)
        driver.save_screenshot(str(out))
    print("wrote", out)


def main(out: Path) -> None:
    env = {"OTEL_ML_PAGE_INTERVAL": "1"}
    log = out / ".demo.log"
    proc, base = start_example(
        log, instrument=False, slow_step=300, slow_seconds=0.4, threshold=0.1, env=env, epochs=20, nan_at_step=-1
    )
    try:
        wait_for(lambda: "fit finished" in log.read_text(), 600, "the demo's fit")
        time.sleep(4)
        _shoot(base + "/", out / "page-training.png", 2.5, height=1080)
    finally:
        stop(proc)
    proc, base = start_example(
        log, instrument=False, slow_step=-1, slow_seconds=0.0, threshold=1.0, env=env, epochs=8, nan_at_step=200
    )
    try:
        wait_for(lambda: "fit finished" in log.read_text(), 600, "the NaN fit")
        time.sleep(3)
        _shoot(base + "/", out / "page-nan.png", 2.5, height=760)
    finally:
        stop(proc)
    port = free_port()
    gpu_env = {**env, "OTEL_ML_GPU_NVML_MODULE": "tests.fake_nvml", "OTEL_METRICS_EXPORTER": "otel_ml_prometheus"}
    gpu = [sys.executable, "-m", "otel_ml.distro.cli", "gpu", "--host", "127.0.0.1", "--port", str(port)]
    proc = start(gpu, env=gpu_env, log=log)
    try:
        wait_for(lambda: len(get_json(f"http://127.0.0.1:{port}/page/data")["t"]) >= 8, 60, "the GPU history")
        _shoot(f"http://127.0.0.1:{port}/", out / "page-gpu.png", 1.0, height=800)
    finally:
        stop(proc)
    log.unlink()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs"))
