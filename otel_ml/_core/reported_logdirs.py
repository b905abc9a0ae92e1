"""Logdirs whose training values another instrumentor already reports: one fact, one series.

Keras's ``TensorBoard`` callback writes a fit's epoch loss, metrics and
learning rate to ``<log_dir>/train`` and ``<log_dir>/validation``. When the
Keras instrumentor reports that fit, the same facts are already in
``ml.train.*`` (the true last batch loss, every epoch-end value), so the
tf.summary instrumentor must not feed them there a second time under another
run name: the callback's writes stay in ``ml.tensorboard.*``.

The Keras wrapper claims the callback's ``log_dir`` here when the fit starts
(before the callback creates its writers) and releases it when the fit ends.
What is claimed is decided once per event file (and per writer, on the
per-write path), when the writer is created: a writer made under a claimed
logdir while the fit runs is the callback's. A claim therefore does not
outlive its fit: a writer the program creates later under the same logdir (a
custom loop after ``fit``, the next run of a notebook) feeds ``ml.train.*``
as in any tf.summary program, and its NaN loss counts as an anomaly.

Bounded: at most :data:`MAX_CLAIMS` logdirs are claimed at once (fits running
at the same time); beyond that a callback's values feed ``ml.train.*`` as in a
plain tf.summary program, rather than the table growing without end.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from typing import Any, Final

MAX_CLAIMS: Final = 4096
_claimed: Counter[str] = Counter()
_lock = threading.Lock()


def claim_keras_tensorboard(callbacks: Any) -> list[str]:
    """Claim the ``log_dir`` of each Keras ``TensorBoard`` callback (or subclass) among ``callbacks``.

    ``callbacks`` is what ``fit`` was given: None, one callback, a list or a
    ``CallbackList``. Anything else is ignored.

    Returns:
        The claims taken, for :func:`release` when the fit ends.
    """
    if callbacks is None:
        return []
    items = getattr(callbacks, "callbacks", callbacks)
    if not isinstance(items, (list, tuple)):
        items = [items]
    taken = []
    for callback in items:
        if not any(cls.__name__ == "TensorBoard" for cls in type(callback).__mro__):
            continue
        log_dir = getattr(callback, "log_dir", None)
        if isinstance(log_dir, (str, os.PathLike)):
            path = claim(os.fspath(log_dir))
            if path is not None:
                taken.append(path)
    return taken


def claim(logdir: str) -> str | None:
    """Mark ``logdir`` and everything under it as reported by the Keras instrumentor, until :func:`release`.

    Returns:
        The claim (the absolute logdir), or None when :data:`MAX_CLAIMS` are held already.
    """
    path = os.path.abspath(logdir)
    with _lock:
        if path not in _claimed and len(_claimed) >= MAX_CLAIMS:
            return None
        _claimed[path] += 1
        return path


def release(claims: list[str]) -> None:
    """Give back the claims :func:`claim_keras_tensorboard` took (the fit ended)."""
    with _lock:
        for path in claims:
            if _claimed[path] <= 1:
                _claimed.pop(path, None)
            else:
                _claimed[path] -= 1


KERAS_RUNS: Final = frozenset({"train", "validation"})
"""The directories Keras's ``TensorBoard`` callback writes in, under its ``log_dir`` (Keras 3 and 2 alike; under a
multi-worker strategy, below a per-worker temporary directory of ``log_dir``)."""


def claimed(logdir: str) -> bool:
    """Whether a writer of ``logdir`` is a Keras ``TensorBoard`` callback's, in a fit the Keras instrumentor reports.

    That is: ``logdir`` is a ``train`` or ``validation`` directory under a claimed ``log_dir``. Another writer
    under that ``log_dir`` (a custom callback's ``log_dir/custom``, the image tutorial's ``log_dir/cm``) is the
    program's own, whose values feed ``ml.train.*`` as usual.
    """
    if not _claimed:
        return False
    current = os.path.abspath(logdir)
    if os.path.basename(current) not in KERAS_RUNS:
        return False
    while True:
        if current in _claimed:
            return True
        parent = os.path.dirname(current)
        if parent == current:
            return False
        current = parent


def clear() -> None:
    """Forget every claim, and that metrics were delivered nowhere (tests)."""
    global _metrics_delivered  # one process-wide fact
    with _lock:
        _claimed.clear()
    _metrics_delivered = True


# --- whether this process's metrics reach anything -------------------------------------------------------------
# The tf.summary follower marks the event files it reports, so that `otel-ml tensorboard` on the same logdir skips
# them. A process whose metrics go nowhere (its /metrics port was taken, e.g. by that very bridge, and no push
# exporter is set; or OTEL_METRICS_EXPORTER=none) must not mark them: the bridge would skip values that nobody
# delivers. The distro layer, which builds the SDK, says so here; providers otel_ml did not build count as delivering.

_metrics_delivered = True


def set_metrics_delivered(delivered: bool) -> None:
    """Whether the meter provider otel_ml built delivers metrics anywhere (an endpoint serving, or a push exporter)."""
    global _metrics_delivered  # one process-wide fact, set once by the SDK set-up
    _metrics_delivered = delivered


def metrics_delivered() -> bool:
    """False when otel_ml's own meter provider has no reader that delivers (see :func:`set_metrics_delivered`)."""
    return _metrics_delivered
