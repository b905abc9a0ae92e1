"""The keras-io "endpoint layer" recipe: the loss comes from ``add_loss`` in a layer that sees the targets.

Nothing is compiled but the optimizer (``compile(optimizer)``), the data is a
dict of NumPy arrays with the targets and sample weights as inputs, at the
recipe's sizes (1,000 rows, the default batch of 32: 31 full batches and one
of 8), for the functional and the subclassed model; then the same functional
model fed as ``tf.data`` (batch 32 over 2,000 rows). On Keras 2 the loss
``Mean`` then weighs each batch by 1, not by its rows.

The endpoint layer notes the loss of each batch it computes (the models run
eagerly for that): the true loss of the last batch, whatever the shuffling.
"""

import numpy as np
import tensorflow as tf
from _truth import keras, record

keras.utils.set_random_seed(25)
FEATURES = 24  # the recipe's 764, smaller to stay fast


class LogisticEndpoint(keras.layers.Layer):
    def __init__(self, name=None):
        super().__init__(name=name)
        self.loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)
        self.accuracy_metric = keras.metrics.BinaryAccuracy(name="accuracy")
        self.last_loss = None

    def call(self, logits, targets=None, sample_weight=None):
        if targets is not None:
            loss = self.loss_fn(targets, logits, sample_weight)
            self.add_loss(loss)
            if hasattr(loss, "numpy"):  # eager (not while the functional model is built)
                self.last_loss = float(loss.numpy())  # this batch's loss, as the step computed it
            self.accuracy_metric.update_state(targets, logits, sample_weight)
        return keras.activations.sigmoid(logits)


def functional(name):
    inputs = keras.Input((FEATURES,), name="inputs")
    targets = keras.Input((1,), name="targets")
    sample_weight = keras.Input((1,), name="sample_weight")
    endpoint = LogisticEndpoint()
    preds = endpoint(keras.layers.Dense(1)(inputs), targets, sample_weight)
    model = keras.Model([inputs, targets, sample_weight], preds, name=name)
    model.compile(keras.optimizers.Adam(1e-3), run_eagerly=True)
    return model, endpoint


class LogReg(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(1)
        self.logistic_endpoint = LogisticEndpoint()

    def call(self, inputs):
        logits = self.dense(inputs["inputs"])
        return self.logistic_endpoint(logits=logits, targets=inputs["targets"], sample_weight=inputs["sample_weight"])


def data(rows):
    rng = np.random.default_rng(rows)
    return {
        "inputs": rng.random((rows, FEATURES)).astype("float32"),
        "targets": rng.random((rows, 1)).astype("float32"),
        "sample_weight": rng.random((rows, 1)).astype("float32"),
    }


model, endpoint = functional("endpoint_functional")
model.fit(data(1000), epochs=2, verbose=0)
print("endpoint_functional", int(model.optimizer.iterations.numpy()), repr(endpoint.last_loss))
record(model, epochs=2, samples=2000, last_loss=endpoint.last_loss)

sub = LogReg(name="endpoint_subclassed")
sub.compile(keras.optimizers.Adam(1e-3), run_eagerly=True)
sub.fit(data(1000), epochs=2, verbose=0)
print("endpoint_subclassed", int(sub.optimizer.iterations.numpy()), repr(sub.logistic_endpoint.last_loss))
record(sub, epochs=2, samples=2000, last_loss=sub.logistic_endpoint.last_loss)

model, endpoint = functional("endpoint_tf_data")
model.fit(tf.data.Dataset.from_tensor_slices(data(2000)).batch(32), epochs=1, verbose=0)
print("endpoint_tf_data", int(model.optimizer.iterations.numpy()), repr(endpoint.last_loss))
record(model, epochs=1, samples=2000, last_loss=endpoint.last_loss)
