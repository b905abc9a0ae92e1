"""Keras 2 (``tf_keras``) as :mod:`otel_ml._training` sees it.

Keras 2's ``fit`` makes a ``DataHandler`` rather than a bare adapter: the
handler knows the batches per epoch (``inferred_steps``, also for a
``tf.data`` of known cardinality), its adapter the batch size and the size
of the partial last batch, through methods rather than properties. Its
loss ``Mean`` joins ``model.metrics`` only once the first step built it, and
its variables are plain ``tf.Variable`` objects, whose ``value`` is a method
rather than Keras 3's backend-tensor property.
"""

from __future__ import annotations

from typing import Any

from otel_ml._core import semconv as sc
from otel_ml._training.flavour import DataSizes, Flavour, as_float, read_attribute
from otel_ml._training.loss import loss_mean_count, metrics_loss_count


def _call(owner: Any, name: str) -> Any:
    """``owner.name()``, or None when it is missing or raises."""
    method = read_attribute(owner, name)
    try:
        return method() if callable(method) else None
    except Exception:  # noqa: BLE001 - an adapter we do not own; absent is the honest answer
        return None


def _read_handler(handler: Any) -> DataSizes:
    adapter = read_attribute(handler, "_adapter")
    partial = _call(adapter, "partial_batch_size") if _call(adapter, "has_partial_batch") else None
    # The batches of one pass over the data (arrays); the handler's inferred_steps is steps_per_epoch when given.
    size = _call(adapter, "get_size")
    batches = size if isinstance(size, int) and size > 0 else read_attribute(handler, "inferred_steps")
    return _call(adapter, "batch_size"), batches, partial


def _loss_count(model: Any) -> Any:
    """The loss ``Mean`` from ``model.metrics`` (a custom ``train_step``'s own), else the built-in one.

    Keras 2 lists its built-in loss ``Mean`` among ``model.metrics`` only once
    the first train step built it; its ``compiled_loss`` holds that very
    object from ``compile()`` on, so reading it at fit start is exact.
    """
    count = metrics_loss_count(model)
    if count is not None:
        return count
    return loss_mean_count(read_attribute(read_attribute(model, "compiled_loss"), "_total_loss_mean"))


def _read_variable(variable: Any) -> float | None:
    """A scalar ``tf.Variable`` as a float (one eager read), or None."""
    try:
        return as_float(variable)
    except Exception:  # noqa: BLE001 - a variable we do not own; absent is the honest answer
        return None


KERAS_2 = Flavour(
    framework=sc.FRAMEWORK_TF_KERAS,
    callback="tf_keras.src.callbacks:Callback",
    callback_list="tf_keras.src.callbacks:CallbackList",
    builtin_train_step="tf_keras.src.engine.",
    read_data=_read_handler,
    loss_count=_loss_count,
    read_scalar=_read_variable,
    # Batch logs as Keras made them (tensors): no numpy conversion of every
    # log per batch on our account; the one value we need is read as a float.
    callback_attributes={"_supports_tf_logs": True},
)
