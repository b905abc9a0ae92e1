"""A GAN as the Keras examples write it: super().compile() without an optimizer, two optimizers on attributes."""

import keras
import numpy as np
import tensorflow as tf
from _truth import record

keras.utils.set_random_seed(4)
LATENT = 3


class GAN(keras.Model):
    def __init__(self, discriminator, generator):
        super().__init__(name="gan")
        self.discriminator = discriminator
        self.generator = generator
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.seed_generator = keras.random.SeedGenerator(4)

    def compile(self, d_optimizer, g_optimizer, loss_fn):
        super().compile()
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        self.loss_fn = loss_fn

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker]

    def train_step(self, real):
        batch = tf.shape(real)[0]
        noise = keras.random.normal((batch, LATENT), seed=self.seed_generator)
        fake = self.generator(noise)
        images = tf.concat([fake, real], axis=0)
        labels = tf.concat([tf.ones((batch, 1)), tf.zeros((batch, 1))], axis=0)
        with tf.GradientTape() as tape:
            d_loss = self.loss_fn(labels, self.discriminator(images))
        grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights, strict=True))
        noise = keras.random.normal((batch, LATENT), seed=self.seed_generator)
        with tf.GradientTape() as tape:
            g_loss = self.loss_fn(tf.zeros((batch, 1)), self.discriminator(self.generator(noise)))
        grads = tape.gradient(g_loss, self.generator.trainable_weights)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights, strict=True))
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        return {"d_loss": self.d_loss_tracker.result(), "g_loss": self.g_loss_tracker.result()}


discriminator = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(1)])
generator = keras.Sequential([keras.Input((LATENT,)), keras.layers.Dense(6)])
gan = GAN(discriminator, generator)
d_opt, g_opt = keras.optimizers.Adam(0.0003), keras.optimizers.Adam(0.0005)
gan.compile(d_optimizer=d_opt, g_optimizer=g_opt, loss_fn=keras.losses.BinaryCrossentropy(from_logits=True))
data = np.random.default_rng(4).normal(size=(40, 6)).astype("float32")
history = gan.fit(tf.data.Dataset.from_tensor_slices(data).batch(8), epochs=2, verbose=0)
print("gan", round(history.history["d_loss"][-1], 6), round(history.history["g_loss"][-1], 6))
record(
    gan,
    epochs=2,
    samples=80,
    last_loss=None,  # no "loss" in its logs: otel_ml reports none
    optimizers={"d_optimizer": d_opt, "g_optimizer": g_opt},
    samples_counted=False,
)
