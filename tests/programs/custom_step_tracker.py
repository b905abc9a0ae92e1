"""Custom train_step, first pattern of "Customizing what happens in fit()": update self.metrics by hand.

The loss tracker receives one value per batch, so Keras's logged loss is a
mean over batches, not over samples; the data is tf.data with a short last batch.
"""

import keras
import numpy as np
import tensorflow as tf
from _truth import record

keras.utils.set_random_seed(2)


class CustomModel(keras.Model):
    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(y=y, y_pred=y_pred)
        gradients = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(gradients, self.trainable_variables)
        self.last_loss.assign(loss)
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
            else:
                metric.update_state(y, y_pred)
        return {m.name: m.result() for m in self.metrics}


inputs = keras.Input((4,))
model = CustomModel(inputs, keras.layers.Dense(1)(inputs), name="custom_tracker")
model.last_loss = tf.Variable(0.0, trainable=False)
model.compile(optimizer="adam", loss="mse", metrics=["mae"])
rng = np.random.default_rng(2)
x = rng.normal(size=(50, 4)).astype("float32")
y = rng.normal(size=(50, 1)).astype("float32")
ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)  # 16, 16, 16, 2
history = model.fit(ds, epochs=3, verbose=0)
print("custom_tracker", round(history.history["loss"][-1], 6))
record(model, epochs=3, samples=150, last_loss=float(model.last_loss.numpy()), samples_counted=False)
