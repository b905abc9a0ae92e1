"""Tiny Keras models and data for the tests: three model kinds, synthetic data, seconds to train.

The module-level helpers use Keras 3; :func:`kit` gives the same helpers for
either Keras flavour (Keras 3, or Keras 2 as ``tf_keras``), for the tests that
run against both through the ``kit`` fixture of ``tests/conftest.py``.
"""

from __future__ import annotations

import importlib
import time
from types import SimpleNamespace
from typing import Any

import keras
import numpy as np


def data(samples: int = 100, features: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, features)).astype("float32")
    y = rng.normal(size=(samples, 1)).astype("float32")
    return x, y


def sequential(features: int = 4, name: str = "seq", **compile_kwargs: Any) -> keras.Model:
    model = keras.Sequential([keras.Input((features,)), keras.layers.Dense(1)], name=name)
    model.compile(optimizer=compile_kwargs.pop("optimizer", "sgd"), loss="mse", **compile_kwargs)
    return model


def functional(features: int = 4, name: str = "func", **compile_kwargs: Any) -> keras.Model:
    inputs = keras.Input((features,))
    outputs = keras.layers.Dense(1)(keras.layers.Dense(3)(inputs))
    model = keras.Model(inputs, outputs, name=name)
    model.compile(optimizer="sgd", loss="mse", **compile_kwargs)
    return model


class _Sub(keras.Model):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(1)

    def call(self, inputs: Any) -> Any:
        return self.dense(inputs)


def subclassed(features: int = 4, name: str = "sub", **compile_kwargs: Any) -> keras.Model:
    model = _Sub(name=name)
    model.compile(optimizer="sgd", loss="mse", **compile_kwargs)
    return model


def frozen(features: int = 4, name: str = "frozen") -> keras.Model:
    """Predicts 0 forever (zero weights, learning rate 0): each batch's loss is mean(y**2), known exactly."""
    model = keras.Sequential(
        [keras.Input((features,)), keras.layers.Dense(1, kernel_initializer="zeros", bias_initializer="zeros")],
        name=name,
    )
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse")
    return model


MODELS = {"sequential": sequential, "functional": functional, "subclassed": subclassed}


class SleepAt(keras.callbacks.Callback):
    """Sleeps once inside global training step ``step`` (0-based), making it a slow step."""

    def __init__(self, step: int, seconds: float) -> None:
        super().__init__()
        self.target, self.seconds, self.seen = step, seconds, 0

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.seen == self.target:
            time.sleep(self.seconds)
        self.seen += 1


class Boom(Exception):
    """Raised by tests' callbacks; must reach the test unchanged."""


class RaiseAtEpochEnd(keras.callbacks.Callback):
    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        raise self.error


def _kit_callbacks(k: Any) -> tuple[type, type]:
    """SleepAt and RaiseAtEpochEnd on flavour ``k``'s Callback base."""

    class KitSleepAt(k.callbacks.Callback):  # type: ignore[misc,name-defined]
        def __init__(self, step: int, seconds: float) -> None:
            k.callbacks.Callback.__init__(self)
            self.target, self.seconds, self.seen = step, seconds, 0

        on_train_batch_end = SleepAt.on_train_batch_end

    class KitRaiseAtEpochEnd(k.callbacks.Callback):  # type: ignore[misc,name-defined]
        def __init__(self, error: BaseException) -> None:
            k.callbacks.Callback.__init__(self)
            self.error = error

        on_epoch_end = RaiseAtEpochEnd.on_epoch_end

    return KitSleepAt, KitRaiseAtEpochEnd


def kit(flavour: str) -> SimpleNamespace:
    """The helpers of this module built with ``keras`` (Keras 3) or ``tf_keras`` (Keras 2)."""
    if flavour == "keras":
        return SimpleNamespace(
            name="keras", keras=keras, framework="keras", models=MODELS, sequential=sequential,
            functional=functional, frozen=frozen, SleepAt=SleepAt, RaiseAtEpochEnd=RaiseAtEpochEnd,
        )  # fmt: skip
    k = importlib.import_module(flavour)

    def seq(features: int = 4, name: str = "seq", **compile_kwargs: Any) -> Any:
        model = k.Sequential([k.Input((features,)), k.layers.Dense(1)], name=name)
        model.compile(optimizer=compile_kwargs.pop("optimizer", "sgd"), loss="mse", **compile_kwargs)
        return model

    def func(features: int = 4, name: str = "func", **compile_kwargs: Any) -> Any:
        inputs = k.Input((features,))
        model = k.Model(inputs, k.layers.Dense(1)(k.layers.Dense(3)(inputs)), name=name)
        model.compile(optimizer="sgd", loss="mse", **compile_kwargs)
        return model

    class Sub(k.Model):  # type: ignore[misc,name-defined]
        def __init__(self, **kwargs: Any) -> None:
            k.Model.__init__(self, **kwargs)
            self.dense = k.layers.Dense(1)

        call = _Sub.call

    def sub(features: int = 4, name: str = "sub", **compile_kwargs: Any) -> Any:
        model = Sub(name=name)
        model.compile(optimizer="sgd", loss="mse", **compile_kwargs)
        return model

    def frz(features: int = 4, name: str = "frozen") -> Any:
        zeros = {"kernel_initializer": "zeros", "bias_initializer": "zeros"}
        model = k.Sequential([k.Input((features,)), k.layers.Dense(1, **zeros)], name=name)
        model.compile(optimizer=k.optimizers.SGD(learning_rate=0.0), loss="mse")
        return model

    sleep_at, raise_at = _kit_callbacks(k)
    return SimpleNamespace(
        name=flavour, keras=k, framework=flavour, models={"sequential": seq, "functional": func, "subclassed": sub},
        sequential=seq, functional=func, frozen=frz, SleepAt=sleep_at, RaiseAtEpochEnd=raise_at,
    )  # fmt: skip
