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


# Datasets that hand on each element of their input unchanged (no element dropped, reshaped or reordered).
_PASS_THROUGH = frozenset({"_PrefetchDataset", "_OptionsDataset", "CacheDataset", "_CacheDataset"})
_UNKNOWN: DataSizes = (None, None, None)


def _dataset_sizes(dataset: Any) -> DataSizes:
    """The sizes a ``tf.data`` pipeline declares: ``rows.batch(B)``, then only pass-through stages.

    Keras 2's ``DatasetAdapter`` says no batch size; where the samples must
    come from the data (a loss ``Mean`` weighed per batch, see
    :func:`_weighs_batches`), this reads them from the pipeline's own
    structure: the one ``batch`` stage, its ``batch_size`` and
    ``drop_remainder``, and the cardinality of its input. Anything else
    (a ``map`` or ``filter`` after the batch, an input of unknown length):
    unknown, never guessed.
    """
    while type(dataset).__name__ in _PASS_THROUGH:
        dataset = read_attribute(dataset, "_input_dataset")
    if type(dataset).__name__ != "_BatchDataset":
        return _UNKNOWN
    rows_of = read_attribute(read_attribute(dataset, "_input_dataset"), "cardinality")
    try:
        size = int(read_attribute(dataset, "_batch_size"))
        drop = bool(read_attribute(dataset, "_drop_remainder"))
        rows = int(rows_of()) if callable(rows_of) else -1
    except Exception:  # noqa: BLE001 - a dataset we do not own; absent is the honest answer
        return _UNKNOWN
    if size <= 0 or rows < 0:  # unknown (-2) or infinite (-1) input
        return _UNKNOWN
    partial = rows % size
    batches = rows // size if drop or not partial else rows // size + 1
    return size, batches or None, (partial or None) if not drop else None


def _read_handler(handler: Any) -> DataSizes:
    adapter = read_attribute(handler, "_adapter")
    strategy = read_attribute(read_attribute(handler, "_model"), "distribute_strategy")
    # One replica only: a strategy may shard the pipeline (several workers), which its structure does not show.
    if type(adapter).__name__ == "DatasetAdapter" and read_attribute(strategy, "num_replicas_in_sync") == 1:
        sizes = _dataset_sizes(read_attribute(adapter, "_dataset"))
        if sizes[0] is not None:
            return sizes
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


def _weighs_batches(model: Any) -> bool:
    """Whether Keras 2's loss ``Mean`` counts batches, not samples: no loss was compiled (``add_loss`` only).

    Keras 2 weighs each update of that ``Mean`` by the batch dimension of the
    targets of a compiled loss; with none (``compile(optimizer)`` and losses
    from ``add_loss``), by 1 per batch.
    """
    container = read_attribute(model, "compiled_loss")
    if container is None or not hasattr(container, "_user_losses"):
        return False
    losses = read_attribute(container, "_user_losses")
    if isinstance(losses, dict):
        losses = list(losses.values())
    if isinstance(losses, (list, tuple)):
        return all(loss is None for loss in losses)
    return losses is None


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
    weighs_batches=_weighs_batches,
    repeats_data=True,
    read_scalar=_read_variable,
    # Batch logs as Keras made them (tensors): no numpy conversion of every
    # log per batch on our account; the one value we need is read as a float.
    callback_attributes={"_supports_tf_logs": True},
)
