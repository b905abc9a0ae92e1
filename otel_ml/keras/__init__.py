"""Keras 3 training instrumentation: ``Model.fit``, ``evaluate`` and ``predict``.

Usage::

    from otel_ml.keras import KerasInstrumentor
    KerasInstrumentor().instrument()          # before or after ``import keras``
    model.fit(x, y, epochs=3)                 # metrics + spans, no code change

Configuration: the training options, declared once in :mod:`otel_ml._training.options`
(keyword arguments or their ``OTEL_ML_*`` variables; listed in ``docs/configuration.md``).
Disable it alone with ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=keras``.

API: :class:`KerasInstrumentor` (``instrument(meter_provider=...,
tracer_provider=..., **options)``, ``uninstrument()``, which restores the
very originals).

``fit``/``evaluate``/``predict`` live on the backend trainer class
(``keras.src.backend.tensorflow.trainer.TensorFlowTrainer`` for TensorFlow),
not on ``Model``; patching there covers Sequential, functional and subclassed
models, ``tf.keras`` (which is Keras 3 since TF 2.16), and models built
before instrumenting. Nothing is imported until the program imports Keras.
The work is done by :mod:`otel_ml._training`, shared with ``tf_keras``.
"""

from __future__ import annotations

from otel_ml._training.instrumentor import TrainingInstrumentor
from otel_ml._training.options import OPTIONS
from otel_ml.keras._flavour import KERAS_3
from otel_ml.keras.package import _instruments_any

# Backend trainer module -> the class that defines fit/evaluate/predict.
_TRAINERS = {
    "keras.src.backend.tensorflow.trainer": "TensorFlowTrainer",
    "keras.src.backend.jax.trainer": "JAXTrainer",
    "keras.src.backend.torch.trainer": "TorchTrainer",
}
_DATA = ("keras.src.trainers.data_adapters", "get_data_adapter")

__all__ = ["KerasInstrumentor"]


class KerasInstrumentor(TrainingInstrumentor):
    """Instruments Keras 3 training, evaluation and prediction."""

    _instruments_any = _instruments_any
    _imports = ("keras",)
    option_table = OPTIONS
    _flavour = KERAS_3
    _trainers = _TRAINERS
    _data = _DATA
    _modules = (*_TRAINERS, _DATA[0])
