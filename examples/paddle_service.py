"""A Flask inference service around a real Paddle model, observable through otel_ml.

``POST /predict`` takes ``{"instances": [[f0, f1, f2, f3], ...]}`` (1 to 64
rows of 4 finite numbers) and answers ``{"predictions": [[p0, p1, p2], ...],
"classes": [...]}``. ``GET /health`` answers ``{"status": "ok", "runs": N}``,
where ``runs`` counts the predictor runs the service made (a figure the load
test compares with otel_ml's). Bad input (an empty body, bad JSON, the wrong
shape, a non-numeric value) gets a 400 with a message that says what was
wrong and what is accepted; it never reaches the predictor.

The model (a 4-16-3 MLP) is built and saved with ``paddle.jit.save`` by the
example itself, then served through ``paddle.inference`` with a small pool of
``clone()``-d predictors: a predictor must not run on two threads at once.

Run it plainly (it calls ``otel_ml.instrument()`` itself)::

    python examples/paddle_service.py --port 8000

or with no code change through ``opentelemetry-instrument python
examples/paddle_service.py``. Metrics are served on
http://127.0.0.1:9464/metrics unless ``OTEL_METRICS_EXPORTER`` says otherwise
(``otlp`` with ``OTEL_EXPORTER_OTLP_ENDPOINT``); the Flask request span is the
parent of each ``paddle.predictor.run`` span.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import queue
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, make_server

FEATURES = 4
CLASSES = 3
MAX_ROWS = 64
MODEL_NAME = "iris_mlp"
_USAGE = f'send {{"instances": [[{FEATURES} numbers], ...]}} with 1 to {MAX_ROWS} rows'


class BadRequest(ValueError):
    """A request the service refuses; its message goes back to the client."""


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

    def __init__(self, prefix: str, size: int = 4) -> None:
        import paddle.inference as pi

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

    @contextmanager
    def predictor(self) -> Iterator[Any]:
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


def parse_instances(body: bytes) -> list[list[float]]:
    """Validate a ``/predict`` body; raise :class:`BadRequest` naming what is wrong."""
    if not body.strip():
        raise BadRequest(f"empty body: {_USAGE}")
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON ({exc}): {_USAGE}") from None
    if not isinstance(payload, dict) or "instances" not in payload:
        raise BadRequest(f'expected a JSON object with an "instances" key: {_USAGE}')
    rows = payload["instances"]
    if not isinstance(rows, list) or not 1 <= len(rows) <= MAX_ROWS:
        raise BadRequest(f'"instances" must be a list of 1 to {MAX_ROWS} rows: {_USAGE}')
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != FEATURES:
            got = f"{len(row)} values" if isinstance(row, list) else type(row).__name__
            raise BadRequest(f"instances[{i}] has {got}; expected a list of {FEATURES} numbers")
        for j, value in enumerate(row):
            # bool is an int subclass, but true/false is not a feature value.
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise BadRequest(f"instances[{i}][{j}] is {json.dumps(value)}; expected a finite number")
    return rows


def create_app(
    prefix: str,
    *,
    instrument: bool = True,
    meter_provider: Any = None,
    tracer_provider: Any = None,
    pool_size: int = 4,
) -> Flask:
    """The Flask app serving the model saved at ``prefix``; ``instrument``: apply the Flask instrumentation."""
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    pool = PredictorPool(prefix, pool_size)
    app.extensions["predictor_pool"] = pool

    @app.post("/predict")
    def predict() -> Any:
        try:
            rows = parse_instances(request.get_data(cache=False))
        except BadRequest as exc:
            return jsonify(error=str(exc)), 400
        probabilities = pool.predict(rows)
        classes = [max(range(CLASSES), key=p.__getitem__) for p in probabilities]
        return jsonify(predictions=probabilities, classes=classes)

    @app.get("/health")
    def health() -> Any:
        return jsonify(status="ok", model=MODEL_NAME, runs=pool.runs)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        response = jsonify(error=f"{exc.code} {exc.name}: {exc.description}")
        response.status_code = exc.code or 500
        return response

    if instrument:
        FlaskInstrumentor().instrument_app(app, meter_provider=meter_provider, tracer_provider=tracer_provider)
    return app


def make_threaded_server(app: Flask, host: str = "127.0.0.1", port: int = 0) -> BaseWSGIServer:
    """A threaded werkzeug server (one thread per request); ``port=0`` picks a free port."""
    return make_server(host, port, app, threaded=True)


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
