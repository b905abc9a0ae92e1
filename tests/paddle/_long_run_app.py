"""A Flask app around a Paddle model whose run holds the GIL for about a second (for test_gunicorn.py).

``POST /run?rows=N`` runs the model once on N rows; the model (6 dense layers
of 1024) is the one saved at ``LONG_MODEL_PREFIX``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from flask import Flask, request

import otel_ml

otel_ml.instrument()

import paddle.inference as pi  # noqa: E402 - after instrument(), as the example does

config = pi.Config(os.environ["LONG_MODEL_PREFIX"] + ".json", os.environ["LONG_MODEL_PREFIX"] + ".pdiparams")
config.disable_glog_info()
config.set_cpu_math_library_num_threads(1)
predictor = pi.create_predictor(config)
app = Flask(__name__)


@app.post("/run")
def run() -> Any:
    batch = np.ones((int(request.args.get("rows", "1")), 1024), dtype="float32")
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.reshape(list(batch.shape))
    handle.copy_from_cpu(batch)
    predictor.run()
    return {"rows": len(batch)}


@app.get("/health")
def health() -> Any:
    return {"status": "ok"}
