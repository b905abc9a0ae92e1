"""A fit inside a fit: a linear probe trained on the main model's features at each epoch end.

The probe's own fit (2 epochs of one batch of 32 rows) runs inside the main
fit's callback; each fit is reported on its own. The probe's last batch loss
is its last epoch's logged loss (one batch per epoch).
"""

import numpy as np
from _truth import keras, record

keras.utils.set_random_seed(27)
rng = np.random.default_rng(27)
x = rng.normal(size=(200, 8)).astype("float32")
y = rng.normal(size=(200, 1)).astype("float32")
probe_x = rng.normal(size=(32, 8)).astype("float32")
probe_y = rng.integers(0, 2, size=(32, 1)).astype("float32")

encoder = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, activation="relu")], name="encoder")
main = keras.Sequential([encoder, keras.layers.Dense(1)], name="probed_main")
main.compile(optimizer="adam", loss="mse")


class LinearProbe(keras.callbacks.Callback):
    """Trains a fresh-headed probe on the frozen encoder's features, as representation-learning code does."""

    def __init__(self):
        super().__init__()
        self.probe = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")], name="probe")
        self.probe.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy")
        self.losses = []

    def on_epoch_end(self, epoch, logs=None):
        features = encoder.predict(probe_x, verbose=0)
        history = self.probe.fit(features, probe_y, batch_size=32, epochs=2, verbose=0)
        self.losses.append(history.history["loss"][-1])


probe = LinearProbe()
history = main.fit(x, y, batch_size=64, epochs=3, verbose=0, callbacks=[probe])  # 3 full batches and one of 8
print("probed_main", repr(history.history["loss"][-1]), "probe", [repr(v) for v in probe.losses])
record(main, epochs=3, samples=600, last_loss=None)
record(probe.probe, epochs=6, samples=192, last_loss=probe.losses[-1])
