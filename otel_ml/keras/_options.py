"""The Keras instrumentor's options: the training rows it shares with ``tf_keras``, resolved once at instrument time."""

from __future__ import annotations

from otel_ml._core.options import OptionTable
from otel_ml._training.options import TRAINING_OPTIONS, TrainingOptions

OPTIONS = OptionTable(*TRAINING_OPTIONS)
KerasOptions = TrainingOptions
