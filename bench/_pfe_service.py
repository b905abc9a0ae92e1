"""The example service in the seeds' design: Flask + prometheus-flask-exporter, no OpenTelemetry.

The baseline ``bench_paddle.py`` compares otel_ml against: the same app and
predictor pool as ``examples/paddle_service.py``, with prometheus-flask-exporter's
default per-request counter and histogram (labelled by path, method and
status) and a counter and histogram of its own around each inference
(labelled by model and version), served on the app's own ``/metrics``.

    python bench/_pfe_service.py --port 0 --model-dir DIR
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "paddle_service.py"


def _example() -> Any:
    """The example's module, imported as ``python examples/paddle_service.py`` would find it."""
    sys.path.insert(0, str(EXAMPLE.parent))
    return importlib.import_module("paddle_service")


def time_predictions(app: Any, service: Any) -> None:
    """The seeds' model counter and histogram (labelled by model and version) around the app's pool's ``predict``."""
    from prometheus_client import Counter, Histogram

    labels = {"model": service.MODEL_NAME, "version": os.environ.get("MODEL_VERSION", "1")}
    predictions = Counter("model_predictions_total", "Predictions served.", list(labels)).labels(**labels)
    latency = Histogram("model_inference_seconds", "Inference time.", list(labels)).labels(**labels)
    pool = app.extensions["predictor_pool"]
    predict = pool.predict

    def timed_predict(rows: list[list[float]]) -> list[list[float]]:
        t0 = time.perf_counter()
        result = predict(rows)
        latency.observe(time.perf_counter() - t0)
        predictions.inc(len(rows))
        return result  # type: ignore[no-any-return]

    pool.predict = timed_predict


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model-dir", default=None)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    from prometheus_flask_exporter import PrometheusMetrics

    service = _example()
    prefix = service.save_model(args.model_dir or tempfile.mkdtemp(prefix="pfe_service_"))
    app = service.create_app(prefix, instrument=False)
    PrometheusMetrics(app)
    time_predictions(app, service)
    server = service.make_threaded_server(app, "127.0.0.1", args.port)
    print(f"serving on http://127.0.0.1:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
