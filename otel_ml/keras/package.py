"""The distributions the Keras instrumentor applies to: any one of them suffices."""

from __future__ import annotations

# Keras 3 ships inside tensorflow (tf.keras) or on its own; tensorflow-cpu is
# the same code in a smaller wheel, so any of the three is enough. The floors
# are the oldest pair CI tests (scripts/test.sh, .venv-oldest).
_instruments_any = ("keras >= 3.5", "tensorflow >= 2.18", "tensorflow-cpu >= 2.18")
