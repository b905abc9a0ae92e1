"""Callbacks that change training (EarlyStopping, LearningRateScheduler, ReduceLROnPlateau), a LearningRateSchedule."""

import keras
import numpy as np
from _truth import LossOfBatch, learning_rate, record

keras.utils.set_random_seed(7)
rng = np.random.default_rng(7)
x = rng.normal(size=(48, 4)).astype("float32")
y = (x @ np.array([[1.0], [-2.0], [0.5], [0.0]], dtype="float32")).astype("float32")


def model(name, optimizer):
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)], name=name)
    m.compile(optimizer=optimizer, loss="mse")
    return m


# LearningRateScheduler halves the rate each epoch: 0.1, 0.05, 0.025, 0.0125.
sched = model("lr_scheduler", keras.optimizers.SGD(0.1))
truth = LossOfBatch(x, y, 16, epoch=3, batch=2)
sched.fit(
    x,
    y,
    batch_size=16,
    epochs=4,
    shuffle=False,
    verbose=0,
    callbacks=[keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.1 * 0.5**epoch), truth],
)
print("lr_scheduler", round(learning_rate(sched.optimizer), 6))
record(sched, epochs=4, samples=192, last_loss=truth.value)

# EarlyStopping on a loss that cannot improve (learning rate 0) stops after patience + 1 epochs.
stop = model("early_stopping", keras.optimizers.SGD(0.0))
truth = LossOfBatch(x, y, 16, epoch=2, batch=2)
stop.fit(
    x,
    y,
    batch_size=16,
    epochs=10,
    shuffle=False,
    verbose=0,
    callbacks=[keras.callbacks.EarlyStopping(monitor="loss", patience=2), truth],
)
print("early_stopping", len(stop.history.history["loss"]))
record(stop, epochs=3, samples=144, last_loss=truth.value)

# ReduceLROnPlateau cuts a rate that makes no progress.
plateau = model("plateau", keras.optimizers.SGD(0.001))
truth = LossOfBatch(x, y, 16, epoch=3, batch=2)
plateau.fit(
    x,
    y,
    batch_size=16,
    epochs=4,
    shuffle=False,
    verbose=0,
    callbacks=[keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=10.0), truth],
)
print("plateau", len(plateau.history.history["loss"]))
record(plateau, epochs=4, samples=192, last_loss=truth.value)

# A LearningRateSchedule is evaluated at the optimizer's step.
decay = model("schedule", keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(0.01, 3, 0.5)))
truth = LossOfBatch(x, y, 16, epoch=1, batch=2)
decay.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, callbacks=[truth])
print("schedule", round(learning_rate(decay.optimizer), 8))
record(decay, epochs=2, samples=96, last_loss=truth.value)
