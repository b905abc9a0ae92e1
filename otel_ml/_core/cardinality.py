"""The per-process bound on the ``ml.model.name`` / ``ml.run.name`` label values of training series.

A hyperparameter sweep in one process (Keras Tuner, Optuna, a plain loop)
builds a new model per trial, and Keras names each one anew
(``sequential_17``): every fit adds a few dozen series (steps, samples, step
and epoch time buckets, loss, metrics, learning rate) under its own label
values. The OpenTelemetry Python SDK keeps every series it has seen, with its
cumulative value, for the life of the process and offers no public way to
drop one, so without a bound hundreds of trials mean tens of thousands of
series and scrapes of megabytes.

So a process reports at most ``limit`` distinct (model, run) label pairs
exactly; the fits of any further pair are reported under :data:`OVERFLOW`
for both labels, and one WARNING says so. What the overflow series hold:
counters and histograms add up every overflowing fit (all steps, samples and
step times past the limit); gauges (loss, metrics, learning rate) hold the
value of the latest fit, so the newest trial's figures stay readable there.
Spans are not bounded: each ``keras.fit`` span keeps the real names.

Naming trials: inside ``with otel_ml.run(trial_id):`` a model whose name is
Keras's own (its class name in snake case, with or without Keras's ``_N``
suffix) is reported under that class name (:func:`stable_model_name`), so a
sweep's trials share ``ml.model.name`` and differ by ``ml.run.name`` only:
one label pair per trial, comparable across trials.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

_LOG = logging.getLogger(__name__)

OVERFLOW = "_overflow"
"""The ``ml.model.name`` and ``ml.run.name`` of the fits past the per-process limit."""

DEFAULT_LIMIT = 32


class LabelBound:
    """The first ``limit`` distinct (model, run) pairs are admitted as they are; later ones overflow.

    Example:
        >>> bound = LabelBound(2)
        >>> [bound.admit("m", r) for r in ("a", "b", "a", "c")]
        [('m', 'a'), ('m', 'b'), ('m', 'a'), ('_overflow', '_overflow')]
        >>> bound.overflowed
        1
    """

    __slots__ = ("_lock", "_seen", "limit", "overflowed")

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self.overflowed = 0  # fits reported under OVERFLOW

    def admit(self, model: str, run: str) -> tuple[str, str]:
        """The label values to report a fit of ``model`` in ``run`` under."""
        pair = (model, run)
        with self._lock:
            if pair in self._seen:
                return pair
            if len(self._seen) < self.limit:
                self._seen.add(pair)
                return pair
            self.overflowed += 1
            first = self.overflowed == 1
        if first:
            _LOG.warning(
                "otel_ml: more than %d distinct (ml.model.name, ml.run.name) pairs in this process; the fit of "
                "model %r in run %r and every further new pair are reported as %r (spans keep the real names): "
                "OTEL_ML_MAX_RUNS raises the limit; docs/keras.md, 'Sweeps'.",
                self.limit,
                model,
                run,
                OVERFLOW,
            )
        return OVERFLOW, OVERFLOW


_bound = LabelBound()


def training_labels() -> LabelBound:
    """The process's bound, shared by every Keras flavour."""
    return _bound


def reset(limit: int) -> None:
    """A fresh bound of ``limit`` pairs: called when training is instrumented."""
    global _bound
    _bound = LabelBound(limit)


_SUFFIX = re.compile(r"_\d+$")
_WORD = re.compile(r"(.)([A-Z][a-z]+)")
_HUMP = re.compile(r"([a-z])([A-Z])")


def stable_model_name(model: Any, name: str) -> str:
    """``name`` without Keras's uniquifying ``_N`` when the name is Keras's own (the snake-cased class name).

    Example:
        >>> class Sequential: ...
        >>> stable_model_name(Sequential(), "sequential_17"), stable_model_name(Sequential(), "wide_and_deep")
        ('sequential', 'wide_and_deep')
    """
    own = _HUMP.sub(r"\1_\2", _WORD.sub(r"\1_\2", type(model).__name__)).lower()  # Keras's to_snake_case
    base = _SUFFIX.sub("", name)
    return base if base == own else name
