"""A small convnet classifier: validation_split, several epochs, accuracy (Keras "simple MNIST convnet" shape)."""

import keras
import numpy as np
from _truth import LossOfBatch, record

keras.utils.set_random_seed(1)
rng = np.random.default_rng(1)
x = rng.random((100, 8, 8, 1), dtype="float32")
y = rng.integers(0, 3, size=(100,))

model = keras.Sequential(
    [
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(3, activation="softmax"),
    ],
    name="convnet",
)
model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
# validation_split=0.2 keeps the first 80 samples for training: 5 batches of 16 per epoch.
truth = LossOfBatch(x[:80], y[:80], 16, epoch=2, batch=4)
history = model.fit(x, y, batch_size=16, epochs=3, validation_split=0.2, shuffle=False, verbose=0, callbacks=[truth])
print("convnet", [round(v, 6) for v in history.history["val_accuracy"]])
record(model, epochs=3, samples=240, last_loss=truth.value)
