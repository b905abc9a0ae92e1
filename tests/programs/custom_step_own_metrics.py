"""Custom train_step, second pattern of the guide: the model's own Mean loss tracker and MAE metric."""

import keras
import numpy as np
import tensorflow as tf
from _truth import record

keras.utils.set_random_seed(3)


class CustomModel(keras.Model):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.mae_metric = keras.metrics.MeanAbsoluteError(name="mae")
        self.last_loss = tf.Variable(0.0, trainable=False)

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = keras.losses.mean_squared_error(y, y_pred)  # one value per sample
            mean = tf.reduce_mean(loss)
        gradients = tape.gradient(mean, self.trainable_variables)
        self.optimizer.apply(gradients, self.trainable_variables)
        self.last_loss.assign(mean)
        self.loss_tracker.update_state(loss)
        self.mae_metric.update_state(y, y_pred)
        return {"loss": self.loss_tracker.result(), "mae": self.mae_metric.result()}

    @property
    def metrics(self):
        return [self.loss_tracker, self.mae_metric]


inputs = keras.Input((4,))
model = CustomModel(inputs, keras.layers.Dense(1)(inputs), name="custom_own")
model.compile(optimizer=keras.optimizers.SGD(0.05))
rng = np.random.default_rng(3)
x = rng.normal(size=(70, 4)).astype("float32")
y = rng.normal(size=(70, 1)).astype("float32")
history = model.fit(x, y, batch_size=32, epochs=2, verbose=0)  # 32, 32, 6
print("custom_own", round(history.history["loss"][-1], 6))
record(model, epochs=2, samples=140, last_loss=float(model.last_loss.numpy()))
