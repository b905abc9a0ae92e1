"""Two sections of the guide "Training & evaluation with the built-in methods".

- The ``LogisticEndpoint`` of "Handling losses and metrics that don't fit the
  standard signature": a model compiled with no loss, trained on a dict of
  NumPy arrays (100 rows in batches of 32: three full and one of 4).
- "Using a validation dataset ... ``steps_per_epoch``" on NumPy arrays: a
  10-class classifier on 300 rows in batches of 64 (four full, one of 44)
  with ``steps_per_epoch=3`` for 4 epochs. Keras 3 ends an epoch early where
  the data runs out; Keras 2 repeats the data: the short batch falls
  elsewhere in each.

The models run eagerly so that the loss code notes what each step computed:
the true sizes and the true loss of the last batch, whatever Keras does.
"""

import numpy as np
from _truth import keras, record

keras.utils.set_random_seed(26)
rng = np.random.default_rng(26)


class LogisticEndpoint(keras.layers.Layer):
    def __init__(self, name=None):
        super().__init__(name=name)
        self.loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)
        self.accuracy_fn = keras.metrics.BinaryAccuracy()
        self.last_loss = None

    def call(self, targets, logits, sample_weights=None):
        loss = self.loss_fn(targets, logits, sample_weights)
        self.add_loss(loss)
        if hasattr(loss, "numpy"):  # eager (not while the functional model is built)
            self.last_loss = float(loss.numpy())
        self.accuracy_fn.update_state(targets, logits, sample_weights)
        return keras.activations.softmax(logits)


inputs = keras.Input(shape=(3,), name="inputs")
targets = keras.Input(shape=(10,), name="targets")
logits = keras.layers.Dense(10)(inputs)
endpoint = LogisticEndpoint(name="predictions")
model = keras.Model(inputs=[inputs, targets], outputs=endpoint(targets, logits), name="guide_endpoint")
model.compile(optimizer="adam", run_eagerly=True)  # no loss argument
data = {"inputs": rng.random((100, 3)).astype("float32"), "targets": rng.random((100, 10)).astype("float32")}
model.fit(data, epochs=3, verbose=0)
print("guide_endpoint", int(model.optimizer.iterations.numpy()), repr(endpoint.last_loss))
record(model, epochs=3, samples=300, last_loss=endpoint.last_loss)


class NotedLoss:
    """Sparse categorical cross-entropy that notes each batch's size and mean loss as the step computes them."""

    def __init__(self):
        self.sizes = []
        self.last = None
        self.__name__ = "noted_sparse_categorical_crossentropy"

    def __call__(self, y_true, y_pred):
        values = keras.losses.sparse_categorical_crossentropy(y_true, y_pred)
        if hasattr(values, "numpy"):
            array = values.numpy()
            self.sizes.append(len(array))
            self.last = float(np.mean(array, dtype="float64"))
        return values


noted = NotedLoss()
classifier = keras.Sequential(
    [keras.Input((16,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10, activation="softmax")],
    name="steps_per_epoch_arrays",
)
classifier.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss=noted, run_eagerly=True)
x = rng.normal(size=(300, 16)).astype("float32")
y = rng.integers(0, 10, size=(300,)).astype("int32")
classifier.fit(x, y, batch_size=64, steps_per_epoch=3, epochs=4, verbose=0)
print("steps_per_epoch_arrays", int(classifier.optimizer.iterations.numpy()), noted.sizes, repr(noted.last))
record(classifier, epochs=4, samples=sum(noted.sizes), last_loss=noted.last)
