"""steps_per_execution=7 on 50 batches: of known length (arrays) and of unknown length (a filtered tf.data)."""

import keras
import numpy as np
import tensorflow as tf
from _truth import record

keras.utils.set_random_seed(8)
rng = np.random.default_rng(8)
x = rng.normal(size=(400, 4)).astype("float32")
y = rng.normal(size=(400, 1)).astype("float32")


def model(name):
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)], name=name)
    m.compile(optimizer="sgd", loss="mse", steps_per_execution=7)
    return m


known = model("spe_known")
known.fit(x, y, batch_size=8, epochs=1, verbose=0)  # 50 batches: 7 executions of 7, then 1
print("spe_known", int(known.optimizer.iterations.numpy()))
record(known, epochs=1, samples=400, last_loss=None)

# filter() hides the length from Keras: it learns the end only when the data runs out mid-execution.
ds = tf.data.Dataset.from_tensor_slices((x, y)).filter(lambda a, b: True).batch(8)
unknown = model("spe_unknown")
unknown.fit(ds, epochs=2, verbose=0)
print("spe_unknown", int(unknown.optimizer.iterations.numpy()))
record(unknown, epochs=2, samples=800, last_loss=None)
