"""What differs between the Keras flavours that :mod:`otel_ml._training` instruments alike, and the readers they share.

Keras 3 (``keras``, and ``tf.keras`` since TF 2.16) and Keras 2 (``tf_keras``,
and ``tf.keras`` under ``TF_USE_LEGACY_KERAS=1``) run ``fit`` the same way:
a callback list called per execution, a data object made once per fit, a
running-mean ``loss`` in the logs, optimizers with ``iterations``. They differ
in where the callback classes live, how the data object tells its sizes,
which module holds the built-in ``train_step``, where the loss ``Mean`` is
found before the first step and how a scalar variable is read (Keras 3 on
JAX: from the trainer's live state mid-epoch): a :class:`Flavour` says that,
and nothing else.

Whatever the flavour, numbers are read out of logs, data adapters and
variables with the functions below (:func:`as_float`, :func:`positive_int`,
:func:`read_attribute`, :func:`read_scalar`), which never guess and never raise.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DataSizes = tuple[int | None, int | None, int | None]
"""(batch size, batches per epoch, size of the partial last batch); None where the data does not say."""


@dataclass(frozen=True)
class Flavour:
    """One Keras flavour: its ``ml.framework`` value and the few places where it differs.

    Attributes:
        framework: the ``ml.framework`` attribute of its telemetry.
        callback: ``"module:Class"`` of its ``Callback`` base class.
        callback_list: ``"module:Class"`` of its ``CallbackList``.
        builtin_train_step: module prefix of the class defining the built-in ``train_step``.
        read_data: the data object captured at fit start -> :data:`DataSizes`.
        loss_count: the model at fit start -> the ``count`` variable of the Mean behind the logged ``loss``, or None.
        read_scalar: a scalar variable of this flavour (a ``count``, ``iterations``) -> its value, or None.
        live_reader: the model at fit start -> the ``read_scalar`` to use during that fit, for a trainer
            that keeps the current values outside the variables mid-epoch (Keras 3's JAX trainer);
            None: ``read_scalar``.
        callback_attributes: attributes set on each otel_ml callback after ``Callback.__init__``.
        repeats_data: whether ``steps_per_epoch`` over array data repeats the data without a break (Keras 2),
            rather than ending an epoch, and an execution, early where the data runs out (Keras 3).
        weighs_batches: the model at fit start -> whether the built-in ``train_step`` weighs each batch by 1
            (not by its samples) in the loss ``Mean`` (Keras 2 with no compiled loss).
    """

    framework: str
    callback: str
    callback_list: str
    builtin_train_step: str
    read_data: Callable[[Any], DataSizes]
    loss_count: Callable[[Any], Any]
    read_scalar: Callable[[Any], float | None]
    live_reader: Callable[[Any], Callable[[Any], float | None]] | None = None
    callback_attributes: dict[str, Any] = field(default_factory=dict)
    repeats_data: bool = False
    weighs_batches: Callable[[Any], bool] = lambda model: False  # Keras 3 always weighs by samples
    _classes: dict[str, type] = field(default_factory=dict, compare=False, repr=False)

    def reader(self, model: Any) -> Callable[[Any], float | None]:
        """How to read ``model``'s scalar variables during its fit."""
        return self.read_scalar if self.live_reader is None else self.live_reader(model)

    def load(self, target: str) -> Any:
        """The class at ``"module:Class"``, imported on first use (the program has imported Keras by then)."""
        cls = self._classes.get(target)
        if cls is None:
            module, _, name = target.partition(":")
            cls = self._classes[target] = getattr(importlib.import_module(module), name)
        return cls


# --- reading numbers without guessing ---------------------------------------------------


def as_float(value: Any) -> float | None:
    """A log value as a float, or None when it is not a scalar number.

    Handles ints, floats, numpy scalars, 0-d arrays and scalar tensors;
    strings, None, bools, non-scalar arrays and ints beyond float range are
    skipped, never guessed.

    Example:
        >>> as_float(3), as_float("3"), as_float(10**400)
        (3.0, None, None)
    """
    if isinstance(value, float):
        return value
    if value is None or isinstance(value, (bool, str, bytes)):
        return None
    try:
        if isinstance(value, int):
            return float(value)
        shape = getattr(value, "shape", None)
        # len(), not ==: comparing a TensorShape costs more than the whole read.
        if shape is not None and len(shape) != 0:
            return None
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def positive_int(value: Any) -> int | None:
    """``value`` as a positive int, or None (bools, non-numbers, zero and below).

    Example:
        >>> positive_int(64), positive_int(0), positive_int(None), positive_int(True)
        (64, None, None, None)
    """
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number > 0 else None


def read_attribute(owner: Any, name: str) -> Any:
    """``owner.name``, or None when reading it raises (Keras adapters raise NotImplementedError)."""
    try:
        return getattr(owner, name, None)
    except Exception:  # noqa: BLE001 - a property we do not own; absent is the honest answer
        return None


def read_scalar(variable: Any) -> float | None:
    """The value of a framework's scalar variable (Keras ``Variable``, tf ``Variable``), or None.

    Reads the backend tensor (``.value``) and converts that: Keras's own
    ``Variable.numpy()`` goes through ``np.array(variable)``, which warns under
    NumPy 2.
    """
    try:
        value = getattr(variable, "value", variable)
        return as_float(value.numpy() if hasattr(value, "numpy") else value)
    except Exception:  # noqa: BLE001 - a variable we do not own; absent is the honest answer
        return None
