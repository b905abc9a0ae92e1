"""A functional model with two inputs and two outputs, per-output losses and metrics."""

import keras
import numpy as np
from _truth import LossOfBatch, record

keras.utils.set_random_seed(5)
rng = np.random.default_rng(5)
a = rng.normal(size=(60, 3)).astype("float32")
b = rng.normal(size=(60, 2)).astype("float32")
score = rng.normal(size=(60, 1)).astype("float32")
kind = rng.integers(0, 2, size=(60, 1)).astype("float32")

in_a, in_b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
hidden = keras.layers.Dense(4, activation="relu")(keras.layers.Concatenate()([in_a, in_b]))
out_score = keras.layers.Dense(1, name="score")(hidden)
out_kind = keras.layers.Dense(1, activation="sigmoid", name="kind")(hidden)
model = keras.Model([in_a, in_b], [out_score, out_kind], name="multi_io")
model.compile(
    optimizer="rmsprop",
    loss={"score": "mse", "kind": "binary_crossentropy"},
    loss_weights={"score": 1.0, "kind": 0.5},
    metrics={"score": ["mae"], "kind": ["accuracy"]},
)


class MultiLoss(LossOfBatch):
    def on_train_batch_begin(self, batch, logs=None):
        if self.current == self.epoch and batch == self.batch:
            lo = batch * self.size
            x = [a[lo : lo + self.size], b[lo : lo + self.size]]
            y = {"score": score[lo : lo + self.size], "kind": kind[lo : lo + self.size]}
            self.value = float(self.model.compute_loss(x=x, y=y, y_pred=self.model(x, training=True), training=False))


truth = MultiLoss(None, None, 16, epoch=1, batch=3)
history = model.fit(
    {"a": a, "b": b},
    {"score": score, "kind": kind},
    batch_size=16,
    epochs=2,
    shuffle=False,
    verbose=0,
    callbacks=[truth],
)
print("multi_io", round(history.history["loss"][-1], 6), sorted(history.history))
record(model, epochs=2, samples=120, last_loss=truth.value)
