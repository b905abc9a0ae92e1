"""A PyDataset and a Python generator, the two kinds of Python-level input Keras accepts."""

import keras
import numpy as np
from _truth import LossOfBatch, record

keras.utils.set_random_seed(9)
rng = np.random.default_rng(9)
x = rng.normal(size=(44, 4)).astype("float32")
y = rng.normal(size=(44, 1)).astype("float32")


class Batches(keras.utils.PyDataset):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def __len__(self):
        return 4  # 12, 12, 12, 8

    def __getitem__(self, i):
        return x[i * 12 : (i + 1) * 12], y[i * 12 : (i + 1) * 12]


def model(name):
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)], name=name)
    m.compile(optimizer="sgd", loss="mse")
    return m


pyds = model("pydataset")
truth = LossOfBatch(x, y, 12, epoch=1, batch=3)
pyds.fit(Batches(), epochs=2, shuffle=False, verbose=0, callbacks=truth)  # one Callback object, not a list
print("pydataset", int(pyds.optimizer.iterations.numpy()))
record(pyds, epochs=2, samples=88, last_loss=truth.value)


def batches():
    while True:
        for i in range(0, 44, 12):
            yield x[i : i + 12], y[i : i + 12]


gen = model("generator")
truth = LossOfBatch(x, y, 12, epoch=1, batch=3)
gen.fit(batches(), steps_per_epoch=4, epochs=2, verbose=0, callbacks=[truth])
print("generator", int(gen.optimizer.iterations.numpy()))
record(gen, epochs=2, samples=88, last_loss=truth.value)
