"""A Flask inference service around a real Paddle model, observable through otel_ml.

``POST /predict`` takes ``{"instances": [[f0, f1, f2, f3], ...]}`` (1 to 64
rows of 4 finite float32 numbers, ``Content-Type: application/json``) and
answers ``{"predictions": [[p0, p1, p2], ...], "classes": [...], "request_id":
"...", "feedback": ["<token>", ...]}``. ``POST /feedback`` takes ``{"feedback":
["<token>", ...], "labels": [c0, ...]}``, the true class of each row once it
is known, and feeds the model quality counters
(``otel_ml.serving.ModelQuality``): a token carries its row's predicted class,
signed (key: ``FEEDBACK_SECRET``, the same in every worker), so any worker
counts it, however late. ``{"request_id": ..., "labels": ...}`` works too,
on the worker that predicted, for its last 10,000 predictions. ``GET /health`` answers
``{"status": "ok", "runs": N}``, where ``runs`` counts the predictor runs the
service made (a figure the load test compares with otel_ml's). Bad input of
any kind (an empty, over-long or chunked-and-huge body, the wrong content
type, bad or too deeply nested JSON, the wrong shape, a value that is not a
float32 number) gets a 4xx with a message that says what was wrong and what
is accepted; it never reaches the predictor. Every answer is valid JSON.

The model (a 4-16-3 MLP) is built and saved with ``paddle.jit.save`` by the
example itself, then served through ``paddle.inference`` with a small pool of
``clone()``-d predictors: a predictor must not run on two threads at once. The
wait for a free predictor is timed apart from the run with
``otel_ml.serving.QueueTimer`` (``ml.inference.queue.*``).

Run it plainly (it calls ``otel_ml.instrument()`` itself)::

    python examples/paddle_service.py --port 8000

or with no code change through ``opentelemetry-instrument python
examples/paddle_service.py``. Metrics are served on
http://127.0.0.1:9464/metrics unless ``OTEL_METRICS_EXPORTER`` says otherwise
(``otlp`` with ``OTEL_EXPORTER_OTLP_ENDPOINT``). HTTP requests are recorded by
``otel_ml.serving.instrument_flask_app`` (``http.server.*``, stable
conventions). With a trace exporter, the request's server span is the parent
of each ``paddle.predictor.run`` span; with none, no server span is made and
otel_ml records only slow-run spans (listed on ``/slow-steps``). Input
checks live in ``paddle_service_input.py`` beside this file.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import queue
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, Response, jsonify, request
from paddle_service_input import CLASSES, FEATURES, USAGE, BadRequest, parse_feedback, parse_instances, read_json
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, make_server

MODEL_NAME = "iris_mlp"


def save_model(directory: str) -> str:
    """Build the example's classifier and save it with ``paddle.jit.save``; return the path prefix."""
    import paddle

    paddle.seed(7)
    net = paddle.nn.Sequential(
        paddle.nn.Linear(FEATURES, 16), paddle.nn.ReLU(), paddle.nn.Linear(16, CLASSES), paddle.nn.Softmax()
    )
    net.eval()
    prefix = os.path.join(directory, MODEL_NAME)
    spec = [paddle.static.InputSpec([None, FEATURES], "float32", "x")]
    paddle.jit.save(net, prefix, input_spec=spec)
    return prefix


class PredictorPool:
    """A few clones of one predictor, each used by one request at a time."""

    def __init__(self, prefix: str, size: int = 4, meter_provider: Any = None) -> None:
        import paddle.inference as pi

        from otel_ml.serving import QueueTimer

        model_file = prefix + ".json" if os.path.exists(prefix + ".json") else prefix + ".pdmodel"
        config = pi.Config(model_file, prefix + ".pdiparams")
        config.disable_glog_info()
        base = pi.create_predictor(config)
        self._free: queue.Queue[Any] = queue.Queue()
        self._free.put(base)
        for _ in range(size - 1):
            self._free.put(base.clone())
        self._lock = threading.Lock()
        self.runs = 0
        self._waits = QueueTimer(MODEL_NAME, meter_provider=meter_provider)

    @contextmanager
    def predictor(self) -> Iterator[Any]:
        with self._waits.waiting():
            predictor = self._free.get()
        try:
            yield predictor
        finally:
            self._free.put(predictor)

    def predict(self, rows: list[list[float]]) -> list[list[float]]:
        import numpy as np

        batch = np.asarray(rows, dtype="float32")
        with self.predictor() as predictor:
            handle = predictor.get_input_handle(predictor.get_input_names()[0])
            handle.reshape(list(batch.shape))
            handle.copy_from_cpu(batch)
            predictor.run()
            output = predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()
        with self._lock:
            self.runs += 1
        return output.tolist()  # type: ignore[no-any-return]


def create_app(
    prefix: str,
    *,
    instrument: bool = True,
    meter_provider: Any = None,
    tracer_provider: Any = None,
    pool_size: int = 4,
) -> Flask:
    """The Flask app serving the model saved at ``prefix``; ``instrument``: record its HTTP telemetry."""
    from otel_ml.serving import ModelQuality, instrument_flask_app

    app = Flask(__name__)
    pool = PredictorPool(prefix, pool_size, meter_provider)
    secret = os.environ.get("FEEDBACK_SECRET") or None
    quality = ModelQuality(MODEL_NAME, classes=range(CLASSES), meter_provider=meter_provider, secret=secret)
    app.extensions["predictor_pool"] = pool

    @app.post("/predict")
    def predict() -> Any:
        rows = parse_instances(read_json(USAGE))
        probabilities = pool.predict(rows)
        if not all(math.isfinite(p) for row in probabilities for p in row):
            raise BadRequest("the model's output for these values is not finite; send smaller magnitudes", 422)
        classes = [max(range(CLASSES), key=p.__getitem__) for p in probabilities]
        request_id = uuid.uuid4().hex
        tokens = [quality.predicted(label, request_id=(request_id, i)) for i, label in enumerate(classes)]
        return jsonify(predictions=probabilities, classes=classes, request_id=request_id, feedback=tokens)

    @app.post("/feedback")
    def feedback() -> Any:
        request_id, tokens, labels = parse_feedback(read_json("see POST /feedback"))
        if tokens is not None:
            counted = sum(quality.observed(label, token=token) for token, label in zip(tokens, labels, strict=True))
            if not counted:
                raise BadRequest("no feedback token is valid and unused", 404)
            return jsonify(counted=counted)
        counted = sum(quality.observed(label, request_id=(request_id, i)) for i, label in enumerate(labels))
        if not counted:
            raise BadRequest(f"request_id {request_id[:40]!r} is unknown or already has its feedback", 404)
        return jsonify(counted=counted)

    @app.get("/health")
    def health() -> Any:
        return jsonify(status="ok", model=MODEL_NAME, runs=pool.runs)

    @app.errorhandler(BadRequest)
    def bad_request(exc: BadRequest) -> tuple[Response, int]:
        return jsonify(error=str(exc)), exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        response = jsonify(error=f"{exc.code} {exc.name}: {exc.description}")
        response.status_code = exc.code or 500
        return response

    @app.errorhandler(Exception)
    def internal_error(exc: Exception) -> tuple[Response, int]:
        app.logger.error("unexpected error in %s", request.path, exc_info=exc)
        return jsonify(error="500 Internal Server Error: see the service's log"), 500

    if instrument:
        instrument_flask_app(app, meter_provider=meter_provider, tracer_provider=tracer_provider)
    return app


def make_threaded_server(app: Flask, host: str = "127.0.0.1", port: int = 0) -> BaseWSGIServer:
    """A threaded werkzeug server (one thread per request); ``port=0`` picks a free port."""
    return make_server(host, port, app, threaded=True)


def wsgi_app() -> Flask:
    """The app for a pre-fork server, e.g. ``gunicorn -w 4 --chdir examples 'paddle_service:wsgi_app()'``.

    Every worker's telemetry reaches one ``/metrics`` (otel_ml detects the
    server); the model is saved once in ``PADDLE_SERVICE_MODEL_DIR`` if that is set.
    """
    import otel_ml

    otel_ml.instrument()  # a no-op under opentelemetry-instrument, which did it already
    model_dir = os.environ.get("PADDLE_SERVICE_MODEL_DIR") or tempfile.mkdtemp(prefix="paddle_service_")
    prefix = os.path.join(model_dir, MODEL_NAME)
    if not os.path.exists(prefix + ".pdiparams"):
        prefix = save_model(model_dir)
    return create_app(prefix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed at start)")
    parser.add_argument("--model-dir", default=None, help="where to save the model (default: a temp dir)")
    parser.add_argument("--no-otel", action="store_true", help="serve without otel_ml (for the benchmark)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no log line per request
    if not args.no_otel:
        import otel_ml

        otel_ml.instrument()  # before paddle.inference is imported: patched on import
    model_dir = args.model_dir or tempfile.mkdtemp(prefix="paddle_service_")
    prefix = save_model(model_dir)
    app = create_app(prefix, instrument=not args.no_otel)
    server = make_threaded_server(app, args.host, args.port)
    print(f"serving on http://{args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
