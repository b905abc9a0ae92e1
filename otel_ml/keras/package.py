"""The distributions the Keras instrumentor applies to: any one of them suffices."""

from __future__ import annotations

# Keras 3 ships inside tensorflow (tf.keras) or on its own; tensorflow-cpu is
# the same code in a smaller wheel, so any of the three is enough.
_instruments_any = ("keras >= 3.0", "tensorflow >= 2.16", "tensorflow-cpu >= 2.16")
