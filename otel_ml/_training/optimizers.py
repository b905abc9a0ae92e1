"""The optimizers a Keras (3 or 2) model actually trains with, and their learning rates.

A model compiled the usual way trains with ``model.optimizer``. A GAN as the
Keras examples write it calls ``super().compile()`` without an optimizer (so
``model.optimizer`` is an unused default) and keeps its real optimizers on
attributes (``d_optimizer``, ``g_optimizer``). Every candidate is found once
at fit start; only those whose ``iterations`` advanced during the fit are
reported, each under ``ml.optimizer.name`` = the attribute that holds it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from otel_ml._training.flavour import as_float, read_attribute

ReadScalar = Callable[[Any], float | None]  # the flavour's reader of a scalar variable

_MAX_OPTIMIZERS = 8  # bounds ml.optimizer.name per model


def _is_optimizer(value: Any) -> bool:
    cls = type(value)
    return hasattr(cls, "apply_gradients") and hasattr(cls, "learning_rate") and hasattr(value, "iterations")


def _iterations(optimizer: Any, read: ReadScalar) -> int | None:
    value = read_attribute(optimizer, "iterations")
    number = None if value is None else read(value)
    return None if number is None or not math.isfinite(number) else int(number)


def _is_schedule(value: Any) -> bool:
    return callable(value) and hasattr(value, "get_config") and not hasattr(value, "numpy")


def learning_rate(optimizer: Any, read: ReadScalar) -> float | None:
    """The optimizer's current learning rate, or None if it cannot be read.

    Unwraps ``LossScaleOptimizer`` (mixed precision, Keras 3 and 2); a
    ``LearningRateSchedule`` is evaluated by Keras's own ``learning_rate``
    property (Keras 3: at the current iteration; Keras 2: the rate of the
    last update), or here at the current iteration for Keras 2's legacy
    optimizers. Read at epoch ends only, so its one device read is not
    paid per step.
    """
    optimizer = read_attribute(optimizer, "inner_optimizer") or optimizer
    value = read_attribute(optimizer, "learning_rate")
    if _is_schedule(value):
        # Keras 2's legacy optimizers hand back the schedule itself: evaluate it
        # where Keras 3's property does, at the current iteration.
        value = value(read_attribute(optimizer, "iterations"))
    if value is None:
        return None
    number = as_float(value)
    return read(value) if number is None else number


class Optimizers:
    """The candidate optimizers of one fit, with their iteration counts at fit start."""

    __slots__ = ("_found", "_last", "_read", "_start")

    def __init__(self, model: Any, read: ReadScalar) -> None:
        found: list[tuple[str, Any]] = []
        compiled = read_attribute(model, "optimizer")
        if compiled is not None:
            found.append(("optimizer", compiled))
        for name, value in list(vars(model).items()):
            if len(found) >= _MAX_OPTIMIZERS:
                break
            if not name.startswith("_") and value is not compiled and _is_optimizer(value):
                found.append((name, value))
        self._found = found
        self._read = read
        self._start = [_iterations(optimizer, read) for _, optimizer in found]
        self._last = list(self._start)

    def advanced(self) -> int | None:
        """The most steps any candidate took since the previous call (None when none can be read)."""
        best: int | None = None
        for i, (_, optimizer) in enumerate(self._found):
            now, last = _iterations(optimizer, self._read), self._last[i]
            if now is not None and last is not None:
                best = max(best or 0, now - last)
            self._last[i] = now
        return best

    def learning_rates(self) -> list[tuple[str, float]]:
        """(name, learning rate) of each candidate that applied at least one update in this fit."""
        rates = []
        for (name, optimizer), start in zip(self._found, self._start, strict=True):
            now = _iterations(optimizer, self._read)
            if now is None or start is None or now <= start:
                continue
            value = learning_rate(optimizer, self._read)
            if value is not None:
                rates.append((name, value))
        return rates
