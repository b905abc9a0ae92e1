"""Both custom train_step patterns of "Customizing what happens in fit() with JAX" (JAX backend only).

A JAX ``train_step(self, state, data)`` is stateless: it takes the variables'
values, returns new ones, and Keras writes them back only at each epoch's
end. First pattern: the compiled loss and metrics, every metric updated by
hand (the ``loss`` tracker gets one value per batch); tf.data with a short
last batch, so the data does not declare its batch size. Second pattern: the
model's own ``Mean`` loss tracker (fed the per-sample losses) and MAE metric,
on arrays.
"""

import jax
import keras
import numpy as np
import tensorflow as tf
from _truth import LossOfBatch, record

keras.utils.set_random_seed(12)


class CompiledMetricsModel(keras.Model):
    def forward_loss(self, trainable, non_trainable, x, y):
        y_pred, non_trainable = self.stateless_call(trainable, non_trainable, x, training=True)
        return self.compute_loss(x, y, y_pred), (y_pred, non_trainable)

    def train_step(self, state, data):
        trainable, non_trainable, optimizer_vars, metrics_vars = state
        x, y = data
        (loss, (y_pred, non_trainable)), grads = jax.value_and_grad(self.forward_loss, has_aux=True)(
            trainable, non_trainable, x, y
        )
        trainable, optimizer_vars = self.optimizer.stateless_apply(optimizer_vars, grads, trainable)
        updated, logs, start = [], {}, 0
        for metric in self.metrics:
            own = metrics_vars[start : start + len(metric.variables)]
            start += len(metric.variables)
            if metric.name == "loss":
                own = metric.stateless_update_state(own, loss)
            else:
                own = metric.stateless_update_state(own, y, y_pred)
            logs[metric.name] = metric.stateless_result(own)
            updated += own
        return logs, (trainable, non_trainable, optimizer_vars, updated)


rng = np.random.default_rng(12)
x = rng.normal(size=(50, 4)).astype("float32")
y = rng.normal(size=(50, 1)).astype("float32")
inputs = keras.Input((4,))
tracker = CompiledMetricsModel(inputs, keras.layers.Dense(1)(inputs), name="jax_custom_tracker")
tracker.compile(optimizer="adam", loss="mse", metrics=["mae"])
truth = LossOfBatch(x, y, 16, epoch=2, batch=3)  # the last batch holds 2 samples
history = tracker.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(16), epochs=3, verbose=0, callbacks=[truth])
print("jax_custom_tracker", round(history.history["loss"][-1], 6))
record(tracker, epochs=3, samples=150, last_loss=truth.value, samples_counted=False)


class OwnMetricsModel(keras.Model):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.mae_metric = keras.metrics.MeanAbsoluteError(name="mae")

    @property
    def metrics(self):
        return [self.loss_tracker, self.mae_metric]

    def per_sample_loss(self, trainable, non_trainable, x, y):
        y_pred, non_trainable = self.stateless_call(trainable, non_trainable, x, training=True)
        losses = keras.losses.mean_squared_error(y, y_pred)
        return keras.ops.mean(losses), (losses, y_pred, non_trainable)

    def train_step(self, state, data):
        trainable, non_trainable, optimizer_vars, metrics_vars = state
        x, y = data
        (_, (losses, y_pred, non_trainable)), grads = jax.value_and_grad(self.per_sample_loss, has_aux=True)(
            trainable, non_trainable, x, y
        )
        trainable, optimizer_vars = self.optimizer.stateless_apply(optimizer_vars, grads, trainable)
        cut = len(self.loss_tracker.variables)
        loss_vars = self.loss_tracker.stateless_update_state(metrics_vars[:cut], losses)
        mae_vars = self.mae_metric.stateless_update_state(metrics_vars[cut:], y, y_pred)
        logs = {
            "loss": self.loss_tracker.stateless_result(loss_vars),
            "mae": self.mae_metric.stateless_result(mae_vars),
        }
        return logs, (trainable, non_trainable, optimizer_vars, loss_vars + mae_vars)


class MeanSquaredOfBatch(LossOfBatch):
    """This model compiles no loss: the true loss of the batch is computed the way its train_step does."""

    def on_train_batch_begin(self, batch, logs=None):
        if self.current == self.epoch and batch == self.batch:
            lo = batch * self.size
            y_pred = self.model(self.x[lo : lo + self.size], training=True)
            losses = keras.losses.mean_squared_error(self.y[lo : lo + self.size], y_pred)
            self.value = float(keras.ops.mean(losses))


rng = np.random.default_rng(13)
x = rng.normal(size=(70, 4)).astype("float32")
y = rng.normal(size=(70, 1)).astype("float32")
inputs = keras.Input((4,))
own = OwnMetricsModel(inputs, keras.layers.Dense(1)(inputs), name="jax_custom_own")
own.compile(optimizer=keras.optimizers.SGD(0.05))
truth = MeanSquaredOfBatch(x, y, 32, epoch=1, batch=2)  # 32, 32, 6
history = own.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0, callbacks=[truth])
print("jax_custom_own", round(history.history["loss"][-1], 6))
record(own, epochs=2, samples=140, last_loss=truth.value)
