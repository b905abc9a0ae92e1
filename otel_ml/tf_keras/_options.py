"""The Keras 2 instrumentor's options: the very rows of the Keras 3 one (same ``OTEL_ML_*`` variables)."""

from __future__ import annotations

from otel_ml._core.options import OptionTable
from otel_ml._training.options import TRAINING_OPTIONS, TrainingOptions

OPTIONS = OptionTable(*TRAINING_OPTIONS)
TfKerasOptions = TrainingOptions
