"""A Flask service whose ``/busy`` holds the GIL in one C call, as a Paddle run does (for tests/test_multiprocess.py).

Run by gunicorn from the tests directory: ``gunicorn --chdir tests _busy_app:app``.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request

import otel_ml
from otel_ml.serving import instrument_flask_app

otel_ml.instrument()
app = Flask(__name__)


@app.post("/predict")
def predict() -> Any:
    return {"classes": [0]}


@app.get("/health")
def health() -> Any:
    return {"status": "ok"}


@app.post("/busy")
def busy() -> Any:
    # One C call over 10^7 ints per unit: no bytecode runs, so no other thread of this worker does either.
    units = int(request.args.get("units", "1"))
    return {"sum": sum(range(units * 10**7))}


instrument_flask_app(app)
