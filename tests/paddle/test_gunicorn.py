"""The example service under real gunicorn: every worker's requests on ONE /metrics, exactly.

Each deployment is a real ``gunicorn -w N`` of ``examples/paddle_service.py``
on loopback; the endpoint is scraped and parsed as Prometheus parses it, and
the sums are compared with the requests sent (each answered 200).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests._gunicorn import REQUESTS_SERIES, gunicorn, kill, load, post
from tests._net import wait_for

APP = "paddle_service:wsgi_app()"
COUNT = REQUESTS_SERIES + "_count"
RUNS = "ml_inference_duration_seconds_count"


@pytest.fixture
def model_env(model_prefix: str) -> dict[str, str]:
    return {"PADDLE_SERVICE_MODEL_DIR": os.path.dirname(model_prefix)}


def _series(server, name: str) -> set[tuple[tuple[str, str], ...]]:  # type: ignore[no-untyped-def]
    return {tuple(sorted(s.labels.items())) for s in server.samples() if s.name.startswith(name)}


def test_sync_workers_every_request_counted_and_a_killed_workers_totals_kept(tmp_path: Path, model_env) -> None:  # type: ignore[no-untyped-def]
    with gunicorn(tmp_path, APP, env=model_env) as server:
        workers = server.worker_pids()
        assert len(workers) == 4
        load(server.port, 400)
        server.wait_total(COUNT, 400, http_route="/predict", http_response_status_code="200")
        server.wait_total(RUNS, 400)
        assert server.total("ml_inference_active") == 0
        series = _series(server, REQUESTS_SERIES)
        # Which workers served is the kernel's choice; every one of the 4 published its own file.
        published = {int(p.stem.split("-")[1]) for p in server.directory.glob("otel_ml-*.json")}
        assert published == workers

        victim = sorted(workers)[0]
        kill(victim)  # SIGKILL: no exit hook runs; what it published is all there is, and it is kept
        wait_for(lambda: victim not in server.worker_pids() and len(server.worker_pids()) == 4, 60, "a new worker")
        # The first collection that finds the dead worker's file folds it into the archive, counts kept
        # (a scrape within a second of the previous one is answered from the endpoint's cache: poll).
        dead_file = server.directory / f"otel_ml-{victim}.json"
        wait_for(lambda: not dead_file.exists(), 10, "the dead worker's file folded into the archive", interval=0.3)
        assert server.total(COUNT, http_route="/predict") == 400
        assert (server.directory / "archive.json").exists()

        load(server.port, 100)
        server.wait_total(COUNT, 500, http_route="/predict", http_response_status_code="200")
        server.wait_total(RUNS, 500)
        assert _series(server, REQUESTS_SERIES) == series  # no series per process
        samples = server.samples()
        [instance] = {s.labels.get("service_instance_id") for s in samples if s.name == COUNT}
        assert instance == os.uname().nodename


def test_gthread_preload_and_max_requests_recycling_keeps_totals_without_new_series(
    tmp_path: Path,
    model_env,  # type: ignore[no-untyped-def]
) -> None:
    # --preload: the master loads the model (and otel_ml) before forking; --max-requests 40: each worker
    # is recycled after 40 requests, so 400 requests go through about 10 worker processes.
    args = ("--preload", "-k", "gthread", "--threads", "4", "--max-requests", "40")
    with gunicorn(tmp_path, APP, *args, env=model_env) as server:
        first = server.worker_pids()
        load(server.port, 80)
        server.wait_total(COUNT, 80, http_route="/predict")
        series = _series(server, REQUESTS_SERIES)
        load(server.port, 320)
        server.wait_total(COUNT, 400, http_route="/predict", http_response_status_code="200")
        server.wait_total(RUNS, 400)
        # The pool's 4 predictors (one created, 3 clones) loaded in the master before the fork: counted
        # once, as one process counts them, not again by each of the ~10 workers forked with them.
        assert server.total("ml_model_load_duration_seconds_count") == 4
        assert not first & server.worker_pids(), "every first worker was recycled"
        assert _series(server, REQUESTS_SERIES) == series
        assert server.total("http_server_active_requests") == 0
        # Recycled workers' files are folded away: the directory does not grow with recycling.
        assert len(list(server.directory.glob("otel_ml-*.json"))) <= 5


def test_under_opentelemetry_instrument(tmp_path: Path, model_env) -> None:  # type: ignore[no-untyped-def]
    with gunicorn(tmp_path, APP, workers=2, env=model_env, instrument=True) as server:
        load(server.port, 200)
        server.wait_total(COUNT, 200, http_route="/predict", http_response_status_code="200")
        server.wait_total(RUNS, 200)
        time.sleep(0.3)
        assert server.total(COUNT, http_route="/predict") == 200


def test_a_run_in_progress_is_seen_while_it_holds_the_gil(tmp_path: Path) -> None:
    # While Paddle's run() holds the worker's GIL nothing else in the worker runs: the run is published as
    # started (ml_inference_active 1) before it begins, and the endpoint process answers meanwhile.
    import paddle

    paddle.seed(3)
    layers: list[Any] = []
    for _ in range(6):
        layers += [paddle.nn.Linear(1024, 1024), paddle.nn.ReLU()]
    prefix = str(tmp_path / "model" / "long")
    spec = [paddle.static.InputSpec([None, 1024], "float32", "x")]
    paddle.jit.save(paddle.nn.Sequential(*layers), prefix, input_spec=spec)
    env = {"LONG_MODEL_PREFIX": prefix}
    with gunicorn(tmp_path, "_long_run_app:app", workers=1, env=env, chdir="tests/paddle") as server:
        assert post(server.port, "/run?rows=1", b"") == 200
        assert post(server.port, "/run?rows=8192", b"") == 200  # a long run (~1 s): the next one is announced
        server.wait_total(RUNS, 2)
        statuses: list[int] = []
        thread = threading.Thread(target=lambda: statuses.append(post(server.port, "/run?rows=8192", b"")))
        thread.start()
        seen: list[float] = []
        while thread.is_alive():
            seen.append(server.total("ml_inference_active", server.samples()))
            time.sleep(0.05)
        thread.join()
        assert statuses == [200]
        assert 1 in seen, seen  # scraped during the run, as Prometheus would
        assert max(seen) == 1
        server.wait_total("ml_inference_active", 0)
        server.wait_total(RUNS, 3)
