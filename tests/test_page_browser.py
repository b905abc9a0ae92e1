"""The live page in a real headless Chromium while a real Keras fit runs in another process.

What a person sees is checked: the loss chart holds as many points as the
history and ends on ``ml_train_loss`` as ``/metrics`` serves it; the slow step
is in the table and its link opens the span whose trace id is the exemplar's;
a NaN run shows the anomaly mark; a paused training shows the time passing;
and the console stays free of errors (CSP violations included).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from tests._browser import chromium, console_errors
from tests._net import get_json, openmetrics, start_example, stop, wait_for

INTERVAL = 0.25
POINTS = 24
SLOW_SECONDS = 0.4
PAGE_ENV = {"OTEL_ML_PAGE_INTERVAL": str(INTERVAL), "OTEL_ML_PAGE_POINTS": str(POINTS)}
HOSTILE = '<b>x</b><img src=x onerror="document.title=1">'
SCREENSHOTS = os.environ.get("PAGE_SCREENSHOT_DIR")  # scripts/page_screenshots.sh: the README's pictures


def _chart(driver: Any, title: str) -> Any:
    """The named chart of the first panel as the page holds it: uPlot's data, marks, and the text shown."""
    return driver.execute_script(
        """
        for (const [key, entry] of window.otelMl.charts) {
          if (key.split("|")[2] !== arguments[0]) continue;
          return {key: key, data: entry.u.data, marks: entry.marks.length, last: entry.last.textContent,
                  anomalies: entry.anomalies.textContent, points: entry.box.dataset.points,
                  drawnMarks: entry.box.dataset.marks, updated: window.otelMl.updated};
        }
        return null;
        """,
        title,
    )


def _fact(driver: Any, name: str) -> str | None:
    from selenium.webdriver.common.by import By

    for fact in driver.find_elements(By.CSS_SELECTOR, ".facts .fact"):
        if fact.get_attribute("data-fact") == name:
            return str(fact.find_element(By.TAG_NAME, "b").text)
    return None


def _sample(families: dict[str, Any], family: str, **labels: str) -> Any:
    found = [
        s
        for s in families[family].samples
        if all(s.labels.get(k) == v for k, v in labels.items()) and s.name in (family, family + "_total")
    ]
    assert len(found) == 1, found
    return found[0]


def test_the_page_follows_a_live_fit(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    proc, base = start_example(
        tmp_path / "fit.log",
        instrument=False,
        slow_step=40,
        slow_seconds=SLOW_SECONDS,
        threshold=0.2,
        env=PAGE_ENV,
        epochs=6,
        samples=1024,
    )
    try:
        with chromium() as driver:
            wait_for(lambda: get_json(base + "/page/data"), 90, "the endpoint")
            driver.get(base + "/")
            # While the fit runs: the loss chart appears and grows.
            first = wait_for(lambda: _chart(driver, "Loss"), 60, "the loss chart")
            assert first["key"] == "Training|model demo_mlp · run demo_mlp|Loss"
            wait_for(lambda: "fit finished" in (tmp_path / "fit.log").read_text(), 120, "the fit's end")
            # Paused (the program holds after fit): the history keeps sampling and fills its rings.
            seen = _chart(driver, "Loss")["updated"]  # the page's refreshes so far: wait for two more
            full = wait_for(
                lambda: (c := _chart(driver, "Loss")) and c["points"] == str(POINTS) and c["updated"] >= seen + 2 and c,
                30,
                "a full history on the page",
            )
            data = get_json(base + "/page/data")
            assert data["points"] == POINTS == data["capacity"]
            times, losses = full["data"][0], full["data"][1]
            assert len(times) == len(losses) == POINTS  # as many points as the history holds
            # Its last value is ml_train_loss on /metrics, exactly, and so is the text beside the chart.
            families = openmetrics(base + "/metrics")
            served = _sample(families, "ml_train_loss", ml_phase="train", ml_run_name="demo_mlp").value
            assert losses[-1] == served, (losses[-1], served)
            shown = float(full["last"].split(" · ")[0].removeprefix("train "))
            assert math.isclose(shown, served, rel_tol=1e-5), (full["last"], served)
            # Time passes on the page while the training is paused: the x axis moves, the last step ages.
            age_before = wait_for(lambda: _fact(driver, "last step"), 10, "the last-step fact")
            time.sleep(3.5)  # the page refreshes every second at this interval
            later = _chart(driver, "Loss")
            assert later is not None and later["data"][0][-1] >= times[-1] + 2.0, (later, times[-1])
            age_after = _fact(driver, "last step")
            assert age_after is not None and int(age_after.split()[0]) >= int(age_before.split()[0]) + 2
            # The slow step is in the table; its link opens the span, whose trace id is the exemplar's.
            rows = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "table.slow tr.row"), 10, "the table")
            slow = [r for r in rows if r.find_elements(By.TAG_NAME, "td")[3].text == "40"]
            assert len(slow) == 1, [r.text for r in rows]
            trace_id = slow[0].get_attribute("data-trace")
            buckets = [
                s
                for s in families["ml_train_step_duration_seconds"].samples
                if s.name.endswith("_bucket") and s.exemplar is not None and s.exemplar.value >= SLOW_SECONDS
            ]
            assert len(buckets) == 1, buckets
            exemplar = buckets[0].exemplar
            assert trace_id == exemplar.labels["trace_id"]
            slow[0].find_elements(By.TAG_NAME, "td")[0].click()  # a click on the row shows the span's ids
            detail = slow[0].find_element(By.XPATH, "following-sibling::tr[1]")
            assert detail.is_displayed() and exemplar.labels["span_id"] in detail.text
            if SCREENSHOTS:
                driver.save_screenshot(str(Path(SCREENSHOTS) / "page-training.png"))
            assert console_errors(driver) == []
            slow[0].find_element(By.CSS_SELECTOR, "a.trace").click()
            span = json.loads(driver.find_element(By.TAG_NAME, "body").text)["slow_steps"][0]
            assert (span["trace_id"], span["span_id"]) == (exemplar.labels["trace_id"], exemplar.labels["span_id"])
            assert span["attributes"]["ml.step"] == 40
            assert console_errors(driver) == []
    finally:
        stop(proc)


def test_a_nan_run_shows_the_anomaly_mark(tmp_path: Path) -> None:
    proc, base = start_example(
        tmp_path / "fit.log",
        instrument=False,
        slow_step=-1,
        slow_seconds=0.0,
        threshold=1.0,
        env={**PAGE_ENV, "OTEL_ML_PAGE_POINTS": "400"},  # the rise stays in view
        epochs=2,
        samples=512,
        nan_at_step=20,
        run_name=HOSTILE,  # type: ignore[arg-type]  # start_example passes every flag as text
    )
    try:
        with chromium() as driver:
            wait_for(lambda: get_json(base + "/page/data"), 90, "the endpoint")
            driver.get(base + "/")
            wait_for(lambda: "fit finished" in (tmp_path / "fit.log").read_text(), 120, "the fit's end")
            seen = wait_for(lambda: _chart(driver, "Loss"), 20, "the loss chart")["updated"]
            chart = wait_for(
                lambda: (
                    (c := _chart(driver, "Loss"))
                    and c["drawnMarks"] not in (None, "0")
                    and c["updated"] >= seen + 2
                    and c
                ),
                20,
                "the anomaly mark",
            )
            counted = _sample(
                openmetrics(base + "/metrics"), "ml_train_anomalies", ml_anomaly_kind="nan_loss"
            ).value  # the counter's value behind the mark
            assert "nan_loss \u00d7" in chart["anomalies"]
            shown = float(chart["anomalies"].split("nan_loss \u00d7")[1].split()[0].rstrip(","))
            # The marks add up the counter's rises the history saw (all of them: it started at 0 in view).
            assert shown == counted, (chart["anomalies"], counted)
            # The mark is drawn: red pixels at its time on the loss chart's canvas.
            red = driver.execute_script(
                """
                const entry = [...window.otelMl.charts.values()].find(e => e.box.dataset.chart === "Loss");
                const u = entry.u, t = entry.marks[0].t;
                const x = Math.round(u.valToPos(t, "x", true));
                const px = u.ctx.getImageData(x - 1, u.bbox.top + 1, 3, 1).data;
                for (let i = 0; i < px.length; i += 4) if (px[i] > 180 && px[i + 1] < 80 && px[i + 2] < 80) return true;
                return false;
                """
            )
            assert red is True
            # A run name full of markup is shown as text: no element, no script from it.
            from selenium.webdriver.common.by import By

            titles = [h.text for h in driver.find_elements(By.CSS_SELECTOR, ".panel > h3")]
            assert f"model demo_mlp · run {HOSTILE}" in titles, titles
            assert driver.find_elements(By.CSS_SELECTOR, "main img, main script, h3 b") == []
            if SCREENSHOTS:
                driver.save_screenshot(str(Path(SCREENSHOTS) / "page-nan.png"))
            assert console_errors(driver) == []
    finally:
        stop(proc)


def test_otel_ml_gpu_serves_the_same_page(tmp_path: Path) -> None:
    from tests._net import free_port, start

    port = free_port()
    env = {
        **PAGE_ENV,
        "OTEL_ML_GPU_NVML_MODULE": "tests.fake_nvml",  # the test-only seam: the fake instead of pynvml
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        "OTEL_METRICS_EXPORTER": "otel_ml_prometheus",
    }
    args = [sys.executable, "-m", "otel_ml.distro.cli", "gpu", "--host", "127.0.0.1", "--port", str(port)]
    proc = start(args, env=env, log=tmp_path / "gpu.log")
    base = f"http://127.0.0.1:{port}"
    try:
        with chromium() as driver:
            wait_for(lambda: get_json(base + "/page/data")["sections"], 60, "the GPU panel's data")
            driver.get(base + "/")
            power = wait_for(lambda: _chart(driver, "Power (W)"), 30, "the power chart")
            assert power["key"] == "GPUs|all devices|Power (W)"
            wait_for(lambda: (c := _chart(driver, "Power (W)")) and c["last"] and c, 10, "the chart's values")
            shown = dict(part.rsplit(" ", 1) for part in _chart(driver, "Power (W)")["last"].split(" · "))
            assert shown["gpu1"] == "250.5"  # the fake GPU1 power draw, as /metrics serves it
            titles = set(driver.execute_script("return [...window.otelMl.charts.keys()]"))
            assert {"GPUs|all devices|Utilisation", "GPUs|all devices|Temperature (°C)"} <= titles
            assert not [t for t in titles if not t.startswith("GPUs|")]  # only panels with data
            if SCREENSHOTS:
                driver.save_screenshot(str(Path(SCREENSHOTS) / "page-gpu.png"))
            assert console_errors(driver) == []
    finally:
        stop(proc)


def test_otel_ml_tensorboard_serves_the_same_page(tmp_path: Path) -> None:
    from tensorboardX import SummaryWriter

    from tests._net import free_port, start

    writer = SummaryWriter(str(tmp_path / "logs" / "run_a"))
    for step in range(10):
        writer.add_scalar("reward", step * 1.5, step)
    writer.close()
    port = free_port()
    env = {**PAGE_ENV, "OTEL_EXPORTER_PROMETHEUS_PORT": str(port), "OTEL_METRICS_EXPORTER": "otel_ml_prometheus"}
    args = [sys.executable, "-m", "otel_ml.distro.cli", "tensorboard", str(tmp_path / "logs")]
    args += ["--interval", "0.5", "--state-dir", str(tmp_path / "state")]
    proc = start(args, env=env, log=tmp_path / "bridge.log")
    base = f"http://127.0.0.1:{port}"
    try:
        with chromium() as driver:
            wait_for(lambda: get_json(base + "/page/data")["sections"], 60, "the bridge's data")
            driver.get(base + "/")
            chart = wait_for(lambda: (c := _chart(driver, "Scalars")) and c["last"] and c, 30, "the scalars chart")
            assert chart["key"] == "tf.summary|run run_a|Scalars"
            assert chart["last"] == "reward 13.5"  # the last value written, step 9
            assert console_errors(driver) == []
    finally:
        stop(proc)
