"""Scalar variables of a model trained by Keras 3's JAX trainer, read from the trainer's live state.

The JAX trainer is stateless: at the first step of each epoch it takes the
values out of the model's variables (and empties them, to save memory), passes
them through each jitted ``train_step``, and writes them back only at the
epoch's end. Mid-epoch, an emptied variable reads as its initial value (an
``iterations`` of 0, a loss ``count`` of 0). After each execution the trainer
keeps the current values in ``model._jax_state`` so that callbacks can read
them (Keras's ``Callback.model`` writes them back for that; ``jax_state_sync``).
otel_ml reads the few scalars it needs (the optimizer's ``iterations``, the
``count`` of the loss tracker) straight from that state instead, by their
index in ``optimizer.variables`` and ``model.metrics_variables``, where the
trainer puts them: no write-back, so the next step is not slowed and nothing
the program computes changes. Each read waits for the step that produced the
value, which is why they are made only where otel_ml needs a figure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from otel_ml._core.guard import report
from otel_ml._training.flavour import as_float, read_attribute, read_scalar

ReadScalar = Callable[[Any], float | None]

_SLOTS = ("optimizer_variables", "metrics_variables")


def live_reader(model: Any) -> ReadScalar:
    """A reader of ``model``'s scalar variables during its ``fit`` (built at fit start).

    Example:
        >>> live_reader(object()) is read_scalar  # not a JAX-trained model: read the variable
        True
    """
    if not callable(getattr(type(model), "jax_state_sync", None)):
        return read_scalar
    try:
        return JaxStateReader(model)
    except Exception as exc:  # noqa: BLE001 - mid-epoch the variables would read as their initial values
        report("keras.jax state", exc)
        return _absent


def _absent(variable: Any) -> float | None:
    return None


class JaxStateReader:
    """Reads a scalar from the JAX trainer's live state when the model's variables do not hold it."""

    __slots__ = ("_model", "_where")

    def __init__(self, model: Any) -> None:
        self._model = model
        # id(variable) -> (state slot, index). The trainer orders the state like
        # these lists, which are final once fit has built the model (before on_train_begin).
        self._where: dict[int, tuple[str, int]] = {}
        optimizer = read_attribute(model, "optimizer")
        lists = (read_attribute(optimizer, "variables"), read_attribute(model, "metrics_variables"))
        for slot, variables in zip(_SLOTS, lists, strict=True):
            for i, variable in enumerate(variables or ()):
                self._where[id(variable)] = (slot, i)

    def __call__(self, variable: Any) -> float | None:
        model = self._model
        state = getattr(model, "_jax_state", None)
        if not state or getattr(model, "_jax_state_synced", True):
            return read_scalar(variable)  # between epochs, or a callback wrote the state back
        where = self._where.get(id(variable))
        if where is None:
            # Not part of the trainer's state: live unless the trainer emptied it.
            return None if getattr(variable, "_value", 0) is None else read_scalar(variable)
        values = state.get(where[0])
        if not values or where[1] >= len(values):
            return None
        try:
            return as_float(values[where[1]])
        except Exception:  # noqa: BLE001 - an array we do not own (donated, deleted): absent, never a guess
            return None
