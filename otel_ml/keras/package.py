"""The distributions the Keras instrumentor applies to: any one of them suffices."""

from __future__ import annotations

# Keras 3 is the keras distribution, whether used directly or as tf.keras
# (TensorFlow >= 2.16 requires it). 3.11 is the first whose callbacks get the
# index of the *last* batch of each execution, which the step accounting
# relies on; it is the oldest version CI tests (scripts/test.sh, .venv-oldest).
_instruments_any = ("keras >= 3.11",)
