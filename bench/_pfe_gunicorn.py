"""The seeds' design under gunicorn: prometheus-flask-exporter in multiprocess mode, the baseline of bench_gunicorn.py.

The example's app and predictor pool with ``GunicornPrometheusMetrics`` (its
default per-request counter and histogram) and the seeds' model counter and
histogram, every worker writing prometheus_client's mmap files under
``PROMETHEUS_MULTIPROC_DIR``; the master serves their sum on
``PFE_METRICS_PORT`` (``when_ready``) and marks dead workers (``child_exit``),
as prometheus-flask-exporter documents. This file is both the gunicorn config
(``-c``) and the app module::

    PROMETHEUS_MULTIPROC_DIR=D PFE_METRICS_PORT=9300 PADDLE_SERVICE_MODEL_DIR=M \\
        gunicorn -w 4 -c bench/_pfe_gunicorn.py --chdir bench '_pfe_gunicorn:create()'
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def create() -> Any:
    sys.path.insert(0, str(HERE))
    from _pfe_service import _example, time_predictions
    from prometheus_flask_exporter.multiprocess import GunicornPrometheusMetrics

    service = _example()
    prefix = os.path.join(os.environ["PADDLE_SERVICE_MODEL_DIR"], service.MODEL_NAME)
    app = service.create_app(prefix, instrument=False)
    GunicornPrometheusMetrics(app)
    time_predictions(app, service)
    return app


def when_ready(server: Any) -> None:
    from prometheus_flask_exporter.multiprocess import GunicornPrometheusMetrics

    GunicornPrometheusMetrics.start_http_server_when_ready(int(os.environ["PFE_METRICS_PORT"]))


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_flask_exporter.multiprocess import GunicornPrometheusMetrics

    GunicornPrometheusMetrics.mark_process_dead_on_child_exit(worker.pid)
