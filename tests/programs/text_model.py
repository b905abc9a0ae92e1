"""Text classification with TextVectorization on tf.data: map, cache, prefetch (Keras text guide shape)."""

import keras
import numpy as np
import tensorflow as tf
from _truth import LossOfBatch, record

keras.utils.set_random_seed(6)
words = np.array(["good", "bad", "fine", "awful", "great", "poor", "nice", "dull"])
rng = np.random.default_rng(6)
texts = np.array([" ".join(rng.choice(words, size=5)) for _ in range(45)])
labels = rng.integers(0, 2, size=(45, 1)).astype("float32")

vectorize = keras.layers.TextVectorization(max_tokens=20, output_mode="int", output_sequence_length=5)
vectorize.adapt(texts)
ds = (
    tf.data.Dataset.from_tensor_slices((texts, labels))
    .batch(10)  # 10, 10, 10, 10, 5
    .map(lambda t, y: (vectorize(t), y), num_parallel_calls=tf.data.AUTOTUNE)
    .cache()
    .prefetch(tf.data.AUTOTUNE)
)
model = keras.Sequential(
    [
        keras.Input((5,), dtype="int64"),
        keras.layers.Embedding(20, 4),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(1, activation="sigmoid"),
    ],
    name="text",
)
model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
truth = LossOfBatch(keras.ops.convert_to_numpy(vectorize(texts)), labels, 10, epoch=2, batch=4)
history = model.fit(ds, epochs=3, verbose=0, callbacks=[truth])
print("text", round(history.history["loss"][-1], 6))
record(model, epochs=3, samples=135, last_loss=truth.value)
