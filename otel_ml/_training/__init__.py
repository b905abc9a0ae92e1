"""What every training instrumentor shares, framework aside.

- :mod:`.instruments`: the ``ml.train.*`` instruments, created once per meter;
- :mod:`.values`: reading log values and sizes without guessing;
- :mod:`.loss`: de-averaging a running-mean loss, and the loss-spike rule;
- :mod:`.anomalies`: non-finite and spiking losses, counted and reported once;
- :mod:`.steps`: steps, samples, step times and the batch loss between flushes;
- :mod:`.slowest`: slow-step spans and the slowest-steps summary line;
- :mod:`.spans`: fit and epoch spans, guarded against raising span processors;
- :mod:`.epoch`: the values logged at epoch end, on gauges and the epoch span.

The Keras 3 instrumentor feeds these from its callback; a Keras 2
(``tf_keras``) callback would feed them the same way.
"""
