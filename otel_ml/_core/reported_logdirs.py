"""Logdirs whose training values another instrumentor already reports: one fact, one series.

Keras's ``TensorBoard`` callback writes a fit's epoch loss, metrics and
learning rate to ``<log_dir>/train`` and ``<log_dir>/validation``. When the
Keras instrumentor reports that fit, the same facts are already in
``ml.train.*`` (the true last batch loss, every epoch-end value), so the
tf.summary instrumentor must not feed them there a second time under another
run name: the callback's writes stay in ``ml.tensorboard.*``. The Keras
wrapper claims the callback's ``log_dir`` here when the fit starts (before
anything is written); the summary exporter asks, once per tag, whether an
event file lies under a claimed logdir.

Bounded: a process that starts more fits than :data:`MAX_CLAIMS` with distinct
log dirs stops claiming (the later callbacks' values then feed ``ml.train.*``
as in a plain tf.summary program), rather than grow without end.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Final

MAX_CLAIMS: Final = 4096
_claimed: set[str] = set()
_lock = threading.Lock()


def claim_keras_tensorboard(callbacks: Any) -> None:
    """Claim the ``log_dir`` of each Keras ``TensorBoard`` callback (or subclass) among ``callbacks``.

    ``callbacks`` is what ``fit`` was given: None, one callback, a list or a
    ``CallbackList``. Anything else is ignored.
    """
    if callbacks is None:
        return
    items = getattr(callbacks, "callbacks", callbacks)
    if not isinstance(items, (list, tuple)):
        items = [items]
    for callback in items:
        if not any(cls.__name__ == "TensorBoard" for cls in type(callback).__mro__):
            continue
        log_dir = getattr(callback, "log_dir", None)
        if isinstance(log_dir, (str, os.PathLike)):
            claim(os.fspath(log_dir))


def claim(logdir: str) -> None:
    """Mark ``logdir`` and everything under it as reported by the Keras instrumentor."""
    path = os.path.abspath(logdir)
    with _lock:
        if len(_claimed) < MAX_CLAIMS:
            _claimed.add(path)


def claimed(path: str) -> bool:
    """Whether ``path`` (a logdir or an event file) is a claimed logdir or lies under one."""
    if not _claimed:
        return False
    current = os.path.abspath(path)
    while True:
        if current in _claimed:
            return True
        parent = os.path.dirname(current)
        if parent == current:
            return False
        current = parent


def clear() -> None:
    """Forget every claim (tests)."""
    with _lock:
        _claimed.clear()
