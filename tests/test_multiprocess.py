"""Multiprocess mode under real gunicorn: a scrape never waits for a worker that holds its GIL.

The /metrics of a pre-fork deployment is served by its own endpoint process
from what the workers published, so a model that holds every worker's GIL
(here a C call that runs no bytecode for seconds, as a Paddle run does) does
not delay it; the counts stay exact. The example service's scenarios (sync,
gthread, --preload, --max-requests, opentelemetry-instrument, a killed
worker) are in tests/paddle/test_gunicorn.py.
"""

from __future__ import annotations

import http.client
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
from opentelemetry.sdk.trace import TracerProvider

from otel_ml.distro.endpoint import OtelMLPrometheusMetricReader
from otel_ml.distro.endpoint._exemplars import ExemplarCollector
from otel_ml.distro.multiprocess._merge import Directory
from otel_ml.distro.multiprocess._mode import Deployment
from otel_ml.distro.multiprocess._publish import PublishingReader
from tests._gunicorn import REQUESTS_SERIES, gunicorn, load, post, uwsgi
from tests._net import get

COUNT = REQUESTS_SERIES + "_count"


def test_scrape_answers_within_a_second_while_every_worker_holds_its_gil(tmp_path: Path) -> None:
    with gunicorn(tmp_path, "_busy_app:app", workers=2, chdir="tests") as server:
        load(server.port, 40, clients=4)
        server.wait_total(COUNT, 40, http_route="/predict")
        # The endpoint process runs the one-process server: the live page over the merged points, its Host check.
        base = f"http://127.0.0.1:{server.metrics_port}"
        assert get(base + "/")[:2] == (200, "text/html; charset=utf-8")
        assert get(base + "/page/data")[0] == 200
        conn = http.client.HTTPConnection("127.0.0.1", server.metrics_port, timeout=5)
        conn.putrequest("GET", "/metrics", skip_host=True)
        conn.putheader("Host", f"rebind.example:{server.metrics_port}")
        conn.endheaders()
        assert conn.getresponse().status == 403
        conn.close()
        statuses: list[int] = []
        busy = [
            threading.Thread(target=lambda: statuses.append(post(server.port, "/busy?units=12", b""))) for _ in range(2)
        ]
        for thread in busy:
            thread.start()
        time.sleep(0.3)  # both sync workers are now inside their C call
        timings = []
        while all(thread.is_alive() for thread in busy):  # only scrapes made while both workers are busy count
            started = time.monotonic()
            samples = server.samples(accept="application/openmetrics-text; version=1.0.0")
            elapsed = time.monotonic() - started
            if all(thread.is_alive() for thread in busy):
                timings.append(elapsed)
                assert server.total(COUNT, samples, http_route="/predict") == 40
            time.sleep(0.1)
        assert len(timings) >= 2, timings
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


def _merged_samples(directory: Path) -> list[Any]:
    collector = ExemplarCollector()
    collector.add_metrics_data(Directory(str(directory), os.getpid()).merged().metrics_data())
    return [sample for family in collector.collect() for sample in family.samples]


def test_exemplars_survive_publication_and_merging(tmp_path: Path) -> None:
    reader = PublishingReader(Deployment(str(tmp_path), os.getpid(), False, 3600.0), serve=False)
    provider = MeterProvider(metric_readers=[reader])  # the SDK's default: exemplars of sampled spans
    tracer = TracerProvider().get_tracer("test")
    latency = provider.get_meter("test").create_histogram("latency", unit="s")
    try:
        with tracer.start_as_current_span("request") as span:
            latency.record(0.3, {"route": "/predict"})
        reader.publish()
        samples = _merged_samples(tmp_path)
    finally:
        provider.shutdown()
    [bucket] = [s for s in samples if s.exemplar is not None]
    assert bucket.name == "latency_seconds_bucket" and bucket.labels["le"] == "5.0"
    assert bucket.exemplar.labels["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert bucket.exemplar.value == 0.3


def test_a_forked_child_publishes_only_its_own_counts_and_its_totals_outlive_it(tmp_path: Path) -> None:
    # As under gunicorn --preload: the parent measured before the fork; the child inherits those totals.
    reader = PublishingReader(Deployment(str(tmp_path), os.getpid(), False, 3600.0), serve=False)
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("test")
    requests, in_flight = meter.create_counter("requests"), meter.create_up_down_counter("in_flight")
    try:
        requests.add(2)
        in_flight.add(1)
        child = os.fork()
        if child == 0:  # pragma: no cover - the child process
            code = 1
            try:
                requests.add(5)
                in_flight.add(3)
                reader.publish()
                code = 0
            finally:
                os._exit(code)
        assert os.waitpid(child, 0)[1] == 0
        requests.add(1)
        reader.publish()
        samples = _merged_samples(tmp_path)
    finally:
        provider.shutdown()
    values = {s.name: s.value for s in samples if s.name in ("requests_total", "in_flight")}
    # 3 in the parent, 5 in the (dead) child, each counted once; the dead child's 3 in flight are dropped.
    assert values == {"requests_total": 8, "in_flight": 1}
    assert not (tmp_path / f"otel_ml-{child}.json").exists()  # folded into the archive
    assert json.loads((tmp_path / "archive.json").read_text())["owner"] == os.getpid()


@pytest.mark.parametrize("planted", ["open to others", "a link"])
def test_a_temporary_directory_planted_under_the_predictable_name_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, planted: str
) -> None:
    """Another local user who made ``otel_ml-multiprocess-<uid>-<pid>`` first (or left a link there) gets nothing."""
    from otel_ml.distro.multiprocess import _mode

    monkeypatch.setenv("OTEL_ML_MULTIPROCESS", "on")
    monkeypatch.delenv("OTEL_ML_MULTIPROCESS_DIR", raising=False)
    monkeypatch.setattr(_mode.tempfile, "gettempdir", lambda: str(tmp_path))
    name = tmp_path / f"otel_ml-multiprocess-{os.getuid()}-{os.getpid()}"
    if planted == "a link":
        (tmp_path / "theirs").mkdir(mode=0o700)
        name.symlink_to(tmp_path / "theirs")
    else:
        name.mkdir()
        name.chmod(0o777)
    with caplog.at_level("ERROR", logger="otel_ml"):
        assert _mode._decide() is None  # each process serves its own telemetry instead
    [line] = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert str(name) in line and "another user could read or plant telemetry there" in line
    assert not list((tmp_path / "theirs").iterdir()) if planted == "a link" else not list(name.iterdir())
