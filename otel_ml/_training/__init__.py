"""What every Keras training instrumentor shares, Keras 3 and Keras 2 alike.

Following one ``fit`` means reading, in this order:

- :mod:`.wrappers`: the ``fit``/``evaluate``/``predict`` wrappers, the callback
  injection and the data-adapter tap;
- :mod:`.fit`: one ``fit``'s callback, with its spans, slow steps, loss
  anomalies and epoch-end values;
- :mod:`.steps`: steps and samples from the batch indices, and the buffer that
  hands counts and step times to the SDK;
- :mod:`.loss`: the batch loss from Keras's running mean and its own weights,
  and the loss-spike rule;
- :mod:`.optimizers`: the optimizers that trained, and their learning rates;
- :mod:`.instruments`: the ``ml.train.*`` instruments, created once per meter;
- :mod:`.flavour`: what differs between Keras 3 and Keras 2 (``tf_keras``),
  and the readers of log values, sizes and variables that never guess;
- :mod:`.options`: the one options table of both instrumentors;
- :mod:`.instrumentor`: the instrumentor both are: set-up, patching, undo.

The ``keras`` and ``tf_keras`` packages only declare where to patch and which
:class:`~otel_ml._training.flavour.Flavour` to pass.
"""
