"""A seeded program with two fits and a model built in between: its results must not depend on otel_ml."""

import hashlib
import random

import keras
import numpy as np
from _truth import record

keras.utils.set_random_seed(10)
x = np.random.normal(size=(64, 4)).astype("float32")
y = np.random.normal(size=(64, 1)).astype("float32")


def build(name):
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(1)], name=name)
    m.compile(optimizer="adam", loss="mse")
    return m


first = build("seeded_first")
first.fit(x, y, batch_size=16, epochs=2, verbose=0)
second = build("seeded_second")  # draws its initial weights after the first fit
history = second.fit(x, y, batch_size=16, epochs=2, verbose=0)
digest = hashlib.sha256(b"".join(w.tobytes() for w in first.get_weights() + second.get_weights())).hexdigest()
print("seeded weights", digest)
print("seeded final loss", repr(history.history["loss"][-1]))
print("seeded random", repr(random.random()), repr(float(np.random.random())))
record(first, epochs=2, samples=128, last_loss=None)
record(second, epochs=2, samples=128, last_loss=None)
