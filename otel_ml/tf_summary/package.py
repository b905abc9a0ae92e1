"""The distributions the tf.summary instrumentor applies to."""

from __future__ import annotations

# tensorflow-cpu is the same code in a smaller wheel: either one is enough.
_instruments_any = ("tensorflow >= 2.18", "tensorflow-cpu >= 2.18")
# tf.summary.scalar & co. are shims into TensorBoard's summary ops, so it
# must be installed as well (TF 2.21 no longer pulls it in).
_instruments_all = ("tensorboard >= 2.18",)
