"""Programs for the series-shape tests: what the README shows, run as users run it, serving the embedded /metrics.

    python tests/_series_program.py WORKDIR PART [PART ...]

Parts (any combination, run in this order in one process, after ``otel_ml.instrument()``):

- ``keras``: a Keras 3 ``fit`` (model ``shapes_mlp``, run ``shapes``, validation data), then
  ``evaluate`` and ``predict``;
- ``tensorboard``: the same fit gets ``keras.callbacks.TensorBoard(log_dir=WORKDIR/logs/fit)``;
- ``tf_keras``: the same fit in Keras 2 (``tf_keras``, model ``shapes_mlp2``, run ``shapes2``),
  with a TensorBoard callback when ``tensorboard`` is given too;
- ``tf_summary``: the TensorBoard guide's ``GradientTape`` loop (runs ``logs/gradient_tape/train``
  and ``.../test``, tags ``loss`` and ``accuracy``), the hparams tutorial's run
  (``logs/hparam_tuning/run-0``, tag ``accuracy``, no phase anywhere) and PyTorch's tags
  (``Loss/train``, ``Accuracy/test`` in ``logs/torch_style``), a histogram, and eight tags in
  ``logs/many`` (over a small ``OTEL_ML_TF_SUMMARY_MAX_TAGS``, some are dropped);
- ``nan``: a Keras fit whose loss turns NaN (run ``shapes_nan``) and a tf.summary loop whose ``loss``
  does (run ``logs/nan_tape/train``): ``ml.train.anomalies`` from both paths;
- ``gpu``: nothing to do here: the test sets ``OTEL_ML_GPU_NVML_MODULE=tests.fake_nvml``;
- ``serving``: a Flask app with ``instrument_flask_app``, ``ModelQuality`` and ``QueueTimer``,
  four requests (two 200, one 400, one 500 from an exception) through its WSGI path.

Then one line ``READY <json>`` (the facts the test checks exact figures against), and the
endpoint stays up until the file ``WORKDIR/stop`` appears (at most 120 s); the program then
exits normally, so a ``console`` metrics exporter, when configured, prints everything once.
Logging goes to stderr as ``LOG <logger> <LEVEL> <message>``, so a test can tell whose a line is.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import otel_ml

SAMPLES, BATCH, EPOCHS = 64, 16, 2
STEPS = EPOCHS * SAMPLES // BATCH


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(SAMPLES, 4)).astype("float32")
    y = (x @ rng.normal(size=(4, 1))).astype("float32")
    return x, y


def fit(keras: Any, name: str, run: str, callbacks: list[Any]) -> dict[str, Any]:
    x, y = _data()
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)], name=name
    )
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01), loss="mse", metrics=["mae"])
    with otel_ml.run(run):
        history = model.fit(
            x, y, batch_size=BATCH, epochs=EPOCHS, validation_data=(x, y), callbacks=callbacks, verbose=0
        )
        model.evaluate(x, y, batch_size=BATCH, verbose=0)
        model.predict(x, batch_size=BATCH, verbose=0)
    return {key: [float(v) for v in values] for key, values in history.history.items()}


def tf_summary(workdir: Path) -> dict[str, Any]:
    import tensorflow as tf

    logs = workdir / "logs"
    train_writer = tf.summary.create_file_writer(str(logs / "gradient_tape" / "train"))
    test_writer = tf.summary.create_file_writer(str(logs / "gradient_tape" / "test"))
    losses = [1.0 / (epoch + 1) for epoch in range(3)]
    for epoch, loss in enumerate(losses):
        with train_writer.as_default():
            tf.summary.scalar("loss", loss, step=epoch)
            tf.summary.scalar("accuracy", 0.5 + epoch / 10, step=epoch)
            tf.summary.histogram("weights", [0.5, 1.5, 2.5], step=epoch)
        with test_writer.as_default():
            tf.summary.scalar("loss", loss * 2, step=epoch)
            tf.summary.scalar("accuracy", 0.4 + epoch / 10, step=epoch)
    hparams = tf.summary.create_file_writer(str(logs / "hparam_tuning" / "run-0"))
    with hparams.as_default():
        tf.summary.scalar("accuracy", 0.875, step=1)
    torch_style = tf.summary.create_file_writer(str(logs / "torch_style"))
    with torch_style.as_default():
        for step in range(4):
            tf.summary.scalar("Loss/train", 2.0 - step / 4, step=step)
            tf.summary.scalar("Accuracy/test", step / 8, step=step)
    many = tf.summary.create_file_writer(str(logs / "many"))
    with many.as_default():
        for tag in range(8):
            tf.summary.scalar(f"t{tag}", float(tag), step=0)
    for writer in (train_writer, test_writer, hparams, torch_style, many):
        writer.close()  # the follower reads each closed writer's files once more
    return {"gradient_tape_loss": losses[-1]}


def nan(keras: Any, workdir: Path) -> None:
    import tensorflow as tf

    x, y = _data()
    y[20] = np.nan
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)], name="shapes_nan_mlp")
    model.compile(optimizer="sgd", loss="mse")
    with otel_ml.run("shapes_nan"):
        model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
    writer = tf.summary.create_file_writer(str(workdir / "logs" / "nan_tape" / "train"))
    with writer.as_default():
        for step, value in enumerate([1.0, float("nan")]):
            tf.summary.scalar("loss", value, step=step)
    writer.close()


def serving() -> dict[str, Any]:
    from flask import Flask, jsonify

    from otel_ml.serving import ModelQuality, QueueTimer, instrument_flask_app

    app = Flask("shapes")
    quality = ModelQuality("shapes_model", classes=[0, 1])
    queue = QueueTimer("shapes_model")

    @app.post("/predict/<int:label>")
    def predict(label: int) -> Any:
        if label > 1:
            return jsonify(error="no such class"), 400
        with queue.waiting():
            pass
        quality.predicted(label, request_id=label)
        quality.observed(1, request_id=label)
        return jsonify(label=label)

    @app.post("/fail")
    def fail() -> Any:
        raise RuntimeError("a bug in the handler")

    instrument_flask_app(app)
    client = app.test_client()
    # The proxy's stamp (nginx: X-Request-Start: t=<ms>), as a deployment behind one sends it.
    stamp = {"X-Request-Start": f"t={int(time.time() * 1000)}"}
    statuses = [client.post(f"/predict/{label}", headers=stamp).status_code for label in (0, 1, 7)]
    statuses.append(client.post("/fail").status_code)
    return {"statuses": statuses}


def main() -> None:
    logging.basicConfig(stream=sys.stderr, format="LOG %(name)s %(levelname)s %(message)s", level=logging.WARNING)
    workdir = Path(sys.argv[1])
    parts = set(sys.argv[2:])
    otel_ml.instrument()
    facts: dict[str, Any] = {}
    if "keras" in parts:
        import keras

        board = keras.callbacks.TensorBoard(log_dir=str(workdir / "logs" / "fit"))
        callbacks = [board] if "tensorboard" in parts else []
        facts["keras"] = fit(keras, "shapes_mlp", "shapes", callbacks)
    if "tf_keras" in parts:
        import tf_keras

        callbacks = (
            [tf_keras.callbacks.TensorBoard(log_dir=str(workdir / "logs" / "fit2"))] if "tensorboard" in parts else []
        )
        facts["tf_keras"] = fit(tf_keras, "shapes_mlp2", "shapes2", callbacks)
    if "tf_summary" in parts:
        facts["tf_summary"] = tf_summary(workdir)
    if "nan" in parts:
        import keras

        nan(keras, workdir)
    if "serving" in parts:
        facts["serving"] = serving()
    print("READY " + json.dumps(facts), flush=True)
    stop = workdir / "stop"
    deadline = time.monotonic() + 120
    while not stop.exists() and time.monotonic() < deadline:
        time.sleep(0.1)


if __name__ == "__main__":
    main()
