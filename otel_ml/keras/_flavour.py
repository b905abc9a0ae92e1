"""Keras 3 as :mod:`otel_ml._training` sees it: where its callback classes live, how its adapter tells sizes."""

from __future__ import annotations

from typing import Any

from otel_ml._core import semconv as sc
from otel_ml._training.flavour import DataSizes, Flavour, read_attribute, read_scalar
from otel_ml._training.loss import metrics_loss_count
from otel_ml.keras._jax_state import live_reader


def _read_adapter(adapter: Any) -> DataSizes:
    """A Keras 3 ``DataAdapter`` declares its sizes as properties (some raise NotImplementedError)."""
    return (
        read_attribute(adapter, "batch_size"),
        read_attribute(adapter, "num_batches"),
        read_attribute(adapter, "partial_batch_size"),
    )


KERAS_3 = Flavour(
    framework=sc.FRAMEWORK_KERAS,
    callback="keras.src.callbacks.callback:Callback",
    callback_list="keras.src.callbacks.callback_list:CallbackList",
    builtin_train_step="keras.src.backend.",
    read_data=_read_adapter,
    # Keras 3 lists its loss tracker among model.metrics from compile() on.
    loss_count=metrics_loss_count,
    read_scalar=read_scalar,
    live_reader=live_reader,  # JAX: mid-epoch values live in the trainer's state
)
