"""The distributions the Keras 2 instrumentor applies to: any one of them suffices."""

from __future__ import annotations

# Keras 2 lives on as the tf-keras distribution (``import tf_keras``, or
# ``tf.keras`` under TF_USE_LEGACY_KERAS=1); 2.18 is the oldest tested here.
_instruments_any = ("tf-keras >= 2.18",)
