"""What every training instrumentor shares, framework aside.

- :mod:`.instruments`: the ``ml.train.*`` instruments, created once per meter;
- :mod:`.options`: the options table rows of the Keras 3 and Keras 2 instrumentors;
- :mod:`.flavour`: what differs between Keras 3 and Keras 2 (``tf_keras``);
- :mod:`.wrappers`: the ``fit``/``evaluate``/``predict`` wrappers and the callback injection;
- :mod:`.fit`: one ``fit``'s callback, wiring Keras's hooks to the modules below;
- :mod:`.values`: reading log values and sizes without guessing;
- :mod:`.loss`, :mod:`.loss_weights`: de-averaging a running-mean loss with Keras's own weights, the spike rule;
- :mod:`.optimizers`: the optimizers that trained, and their learning rates;
- :mod:`.anomalies`: non-finite and spiking losses, counted and reported once;
- :mod:`.steps`: steps, samples, step times and the batch loss between flushes;
- :mod:`.slowest`: slow-step spans and the slowest-steps summary line;
- :mod:`.spans`: fit and epoch spans, guarded against raising span processors;
- :mod:`.epoch`: the values logged at epoch end, on gauges and the epoch span.

The ``keras`` and ``tf_keras`` instrumentors only choose where to patch and
which :class:`~otel_ml._training.flavour.Flavour` to pass.
"""
