"""Every ``OTEL_ML_*`` environment variable, declared once.

Each constant is the variable's name; the string below it is its
documentation (the README table is generated from the same text). Values are
read when instrumenting, never at import, and an explicit argument to
:func:`otel_ml.instrument` beats the environment, which beats the default.
A value that cannot be parsed is reported once in a log line that names the
variable and what is accepted, and the default is used instead: a typo in a
deployment manifest must not stop a training job.
"""

from __future__ import annotations

from typing import Final

# --- core / Keras -------------------------------------------------------------

OTEL_ML_RUN_NAME: Final = "OTEL_ML_RUN_NAME"
"""
.. envvar:: OTEL_ML_RUN_NAME

The ``ml.run.name`` attribute of every training series. Default: the Keras
model's ``name``. The ``run_name=`` option of ``instrument()`` and the
``otel_ml.run()`` context manager override it.
"""

OTEL_ML_SLOW_STEP_SECONDS: Final = "OTEL_ML_SLOW_STEP_SECONDS"
"""
.. envvar:: OTEL_ML_SLOW_STEP_SECONDS

A fixed slow-step threshold in seconds (a positive number). A step slower than
this gets a ``keras.train_step`` span linked from the step-time histogram's
exemplar. Unset (the default): the threshold is adaptive,
``OTEL_ML_SLOW_STEP_FACTOR`` times the rolling median step time.
"""

OTEL_ML_SLOW_STEP_FACTOR: Final = "OTEL_ML_SLOW_STEP_FACTOR"
"""
.. envvar:: OTEL_ML_SLOW_STEP_FACTOR

Multiplier of the rolling median step time above which a step counts as slow,
when no fixed threshold is set. A number greater than 1. Default: ``3``.
"""

OTEL_ML_WARMUP_STEPS: Final = "OTEL_ML_WARMUP_STEPS"
"""
.. envvar:: OTEL_ML_WARMUP_STEPS

How many executions at the start of each ``fit`` are warm-up (graph tracing,
XLA compilation): they are counted but kept out of the slow-step baseline and
never reported as slow. A whole number >= 0. Default: ``1``.
"""

OTEL_ML_LOSS_SPIKE_THRESHOLD: Final = "OTEL_ML_LOSS_SPIKE_THRESHOLD"
"""
.. envvar:: OTEL_ML_LOSS_SPIKE_THRESHOLD

Robust z-score (distance from the window's median in units of 1.4826 x MAD)
above which a batch loss counts as a ``loss_spike`` anomaly. A positive
number. Default: ``6``.
"""

OTEL_ML_LOSS_SPIKE_WINDOW: Final = "OTEL_ML_LOSS_SPIKE_WINDOW"
"""
.. envvar:: OTEL_ML_LOSS_SPIKE_WINDOW

How many recent batch losses the spike detector compares against. A whole
number >= 8. Default: ``64``.
"""

# --- embedded endpoint ----------------------------------------------------------

OTEL_ML_SLOW_STEP_BUFFER: Final = "OTEL_ML_SLOW_STEP_BUFFER"
"""
.. envvar:: OTEL_ML_SLOW_STEP_BUFFER

How many recent slow-step spans the embedded endpoint keeps for its
``/slow-steps`` view. A whole number >= 1. Default: ``256``.
"""

# --- other instrumentors append their variables below, each with its docstring --
