"""Multiprocess mode under real gunicorn: a scrape never waits for a worker that holds its GIL.

The /metrics of a pre-fork deployment is served by its own endpoint process
from what the workers published, so a model that holds every worker's GIL
(here a C call that runs no bytecode for seconds, as a Paddle run does) does
not delay it; the counts stay exact. The example service's scenarios (sync,
gthread, --preload, --max-requests, opentelemetry-instrument, a killed
worker) are in tests/paddle/test_gunicorn.py.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics._internal import measurement_consumer

from otel_ml.distro.endpoint import OtelMLPrometheusMetricReader
from otel_ml.distro.multiprocess._mode import Deployment
from otel_ml.distro.multiprocess._publish import PublishingReader
from tests._gunicorn import REQUESTS_SERIES, gunicorn, load, post, uwsgi

COUNT = REQUESTS_SERIES + "_count"


def test_scrape_answers_within_a_second_while_every_worker_holds_its_gil(tmp_path: Path) -> None:
    with gunicorn(tmp_path, "_busy_app:app", workers=2, chdir="tests") as server:
        load(server.port, 40, clients=4)
        server.wait_total(COUNT, 40, http_route="/predict")
        statuses: list[int] = []
        busy = [
            threading.Thread(target=lambda: statuses.append(post(server.port, "/busy?units=5", b""))) for _ in range(2)
        ]
        for thread in busy:
            thread.start()
        time.sleep(0.5)  # both sync workers are now inside their C call
        timings = []
        for _ in range(3):
            started = time.monotonic()
            samples = server.samples(accept="application/openmetrics-text; version=1.0.0")
            timings.append(time.monotonic() - started)
            assert server.total(COUNT, samples, http_route="/predict") == 40
            time.sleep(0.2)
        assert all(thread.is_alive() for thread in busy), "the scrapes were made while both workers were busy"
        assert max(timings) < 1.0, timings
        for thread in busy:
            thread.join(120)
        assert statuses == [200, 200]
        server.wait_total(COUNT, 2, http_route="/busy")


def test_otlp_series_identity_is_the_worker_slot_so_recycling_adds_no_series(tmp_path: Path) -> None:
    # A push exporter (the console one: its exports are read back from the log) under --max-requests:
    # every recycled worker takes a freed slot, so service.instance.id takes at most workers + 1 values.
    env = {"OTEL_METRICS_EXPORTER": "console", "OTEL_METRIC_EXPORT_INTERVAL": "200"}
    args = ("--preload", "--max-requests", "10")
    with gunicorn(tmp_path, "_busy_app:app", *args, workers=2, chdir="tests", env=env, endpoint=False) as server:
        load(server.port, 60, clients=4)
        time.sleep(1.0)
    log = server.log.read_text()
    booted = len(re.findall(r"Booting worker with pid", log))
    assert booted >= 6, "workers were recycled"
    host = socket.gethostname()
    identities = set(re.findall(r'"service\.instance\.id": "([^"]+)"', log))
    # the master (it loaded the app with --preload) and the two workers' slots
    assert identities and identities <= {f"{host}-0", f"{host}-1", f"{host}-2"}, identities
    assert '"http.route": "/predict"' in log, "the requests were exported"


@pytest.mark.parametrize("kind", ["endpoint", "publishing"])
def test_observable_readings_never_accumulate_when_collection_outlasts_the_sdk_timeout(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A scrape that waited 20 s for the GIL (a model's run): the SDK's clock jumps inside the second callback.
    # With a deadline, the SDK raised after taking the first instrument's readings and before resetting
    # them, and the next collection added them again (ml_inference_active read 4, then 8, with 2 runs).
    clock = [time.time_ns()]
    monkeypatch.setattr(measurement_consumer, "time_ns", lambda: clock[0])

    def slow(options: CallbackOptions) -> list[Observation]:
        clock[0] += 20 * 10**9
        return [Observation(1)]

    if kind == "endpoint":
        reader: Any = OtelMLPrometheusMetricReader(port=0, start_server=False)
    else:
        reader = PublishingReader(Deployment(str(tmp_path), os.getpid(), False, 3600.0), serve=False)
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("test")
    meter.create_observable_up_down_counter("in_flight", callbacks=[lambda options: [Observation(2)]])
    meter.create_observable_gauge("slow", callbacks=[slow])
    # The SDK checks its deadline before each instrument: the one after the slow callback is where it raised.
    meter.create_observable_gauge("after", callbacks=[lambda options: [Observation(3)]])
    try:
        for _ in range(3):
            if kind == "endpoint":
                values = [s.value for s in reader.registry.collect() for s in s.samples if s.name == "in_flight"]
            else:
                reader.publish()
                document = json.loads(Path(reader.path).read_text())
                values = [
                    p["v"]
                    for scope in document["scopes"]
                    for m in scope["metrics"]
                    if m["name"] == "in_flight"
                    for p in m["points"]
                ]
            assert values == [2]
    finally:
        provider.shutdown()


def test_uwsgi_workers_and_recycled_workers_on_one_endpoint(tmp_path: Path) -> None:
    # uWSGI loads the app in the master and forks in C (no Python fork hooks): otel_ml joins its post-fork hook.
    with uwsgi(tmp_path, "_busy_app:app", "--max-requests", "15") as server:
        load(server.port, 90, clients=3)
        server.wait_total(COUNT, 90, http_route="/predict")
        assert server.total("http_server_active_requests") == 0
