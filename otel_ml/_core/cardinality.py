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
at a time. When a new pair arrives past the limit, the least recently
finished pair none of whose fits still runs is released: its series are
withdrawn through the releaser the distro layer registers
(:func:`set_releaser`, for the SDK provider otel_ml builds), and the new
pair is reported under its own names, so a sweep's newest trials stay exact
(one WARNING says so at the first release). Where no series can be withdrawn
(no releaser: a provider the user built; or every pair still running), the
fits of any further pair are reported under :data:`OVERFLOW` for both
labels, and one WARNING says so. What the overflow series hold:
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
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from otel_ml._core.guard import report

_LOG = logging.getLogger(__name__)

OVERFLOW = "_overflow"
"""The ``ml.model.name`` and ``ml.run.name`` of the fits past the per-process limit."""

DEFAULT_LIMIT = 32


Releaser = Callable[[str, str], bool]
"""``release(model, run) -> withdrawn``: drop every series whose (model, run) labels are these."""

_releaser: Releaser | None = None


def set_releaser(release: Releaser | None) -> None:
    """Register how to withdraw a finished pair's series (the distro layer, for a provider it built), or None.

    The instrumentation layer speaks the OpenTelemetry API only, which cannot
    withdraw a series; the SDK provider otel_ml builds can, through
    ``otel_ml.distro._sdk_internals.series_forgetting``. Without a releaser
    (a user-built provider, an SDK whose internals changed) pairs past the
    limit overflow.
    """
    global _releaser
    _releaser = release
    _bound._release = release


class LabelBound:
    """At most ``limit`` (model, run) pairs at a time: the least recently finished idle pair is released.

    A new pair past the limit is admitted under its own names once a pair
    none of whose fits is running is released (its series withdrawn by the
    registered releaser, least recently finished first), so the newest trials
    of a sweep stay exact. With no releaser, a failing one, or every admitted
    pair still running, the fit is reported under :data:`OVERFLOW`.

    Example:
        >>> bound = LabelBound(2)
        >>> [bound.admit("m", r) for r in ("a", "b", "a", "c")]
        [('m', 'a'), ('m', 'b'), ('m', 'a'), ('_overflow', '_overflow')]
        >>> bound.overflowed
        1
        >>> released = []
        >>> bound = LabelBound(1, lambda m, r: released.append(r) or True)
        >>> bound.admit("m", "a"), bound.admit("m", "b")  # "a" still running
        (('m', 'a'), ('_overflow', '_overflow'))
        >>> bound.finished(("m", "a")); bound.admit("m", "c"), released
        (('m', 'c'), ['a'])
    """

    __slots__ = ("_idle", "_lock", "_release", "_running", "_warned", "limit", "overflowed", "released")

    def __init__(self, limit: int = DEFAULT_LIMIT, release: Releaser | None = None) -> None:
        self.limit = limit
        self._release = release
        # Admitted pairs: the count of their running fits; the idle ones, least recently finished first.
        self._running: dict[tuple[str, str], int] = {}
        self._idle: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()
        self._warned: set[str] = set()  # one WARNING for the first release, one for the first overflow
        self.overflowed = 0  # fits reported under OVERFLOW
        self.released = 0  # pairs whose series were withdrawn

    def admit(self, model: str, run: str) -> tuple[str, str]:
        """The label values to report a fit of ``model`` in ``run`` under; pair with :meth:`finished`."""
        pair = (model, run)
        with self._lock:
            if pair in self._running or len(self._running) < self.limit or self._evict():
                self._running[pair] = self._running.get(pair, 0) + 1
                self._idle.pop(pair, None)
                warn = self.released > 0 and "admitted" not in self._warned
                kind = "admitted"
            else:
                self.overflowed += 1
                warn = "overflow" not in self._warned
                kind = "overflow"
            if warn:
                self._warned.add(kind)
        if warn and kind == "admitted":
            _LOG.warning(
                "otel_ml: more than %d distinct (ml.model.name, ml.run.name) pairs in this process; the series "
                "of finished fits are released from /metrics (least recently finished first) so that the newest "
                "pairs stay exact: OTEL_ML_MAX_RUNS raises the limit; docs/keras.md, 'Sweeps'.",
                self.limit,
            )
        elif warn:
            _LOG.warning(
                "otel_ml: more than %d distinct (ml.model.name, ml.run.name) pairs in this process; the fit of "
                "model %r in run %r and every further new pair that finds no finished pair to release are "
                "reported as %r (spans keep the real names): OTEL_ML_MAX_RUNS raises the limit; docs/keras.md, "
                "'Sweeps'.",
                self.limit,
                model,
                run,
                OVERFLOW,
            )
        return pair if kind == "admitted" else (OVERFLOW, OVERFLOW)

    def finished(self, labels: tuple[str, str]) -> None:
        """A fit admitted under ``labels`` ended: its pair may be released once none of its fits runs."""
        with self._lock:
            running = self._running.get(labels)
            if running is None:
                return  # OVERFLOW, or a pair admitted by an earlier bound
            if running > 1:
                self._running[labels] = running - 1
            else:
                self._running[labels] = 0
                self._idle[labels] = None

    def _evict(self) -> bool:
        """Release the least recently finished idle pair (under the lock); False when none can be."""
        if self._release is None or not self._idle:
            return False
        pair = next(iter(self._idle))
        try:
            withdrawn = self._release(*pair)
        except Exception as exc:  # noqa: BLE001 - a failing releaser means overflow, never a broken fit
            report("training series release", exc)
            withdrawn = False
        if not withdrawn:
            self._release = None  # overflow from now on, as without a releaser
            return False
        del self._idle[pair]
        del self._running[pair]
        self.released += 1
        return True


_bound = LabelBound()


def training_labels() -> LabelBound:
    """The process's bound, shared by every Keras flavour."""
    return _bound


def reset(limit: int) -> None:
    """A fresh bound of ``limit`` pairs, with the registered releaser: called when training is instrumented."""
    global _bound
    _bound = LabelBound(limit, _releaser)


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
