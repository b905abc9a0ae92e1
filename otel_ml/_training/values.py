"""Read numbers out of training logs and data adapters without ever guessing or raising."""

from __future__ import annotations

from typing import Any


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
