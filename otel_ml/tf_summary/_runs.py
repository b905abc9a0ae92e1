"""Which run a write belongs to: the logdir of the writer, named relative to a root.

A writer from ``tf.summary.create_file_writer`` keeps its logdir only inside
a TensorFlow op, so the instrumentor wraps ``create_file_writer`` and
remembers each writer's logdir here (weakly: a writer that the program drops
is forgotten with it). The default writer itself is TensorFlow's per-thread
state, read at write time.
"""

from __future__ import annotations

import os
import re
import threading
import weakref
from typing import Final

UNKNOWN_RUN: Final = "unknown"
"""The run of a writer created before instrumenting, whose logdir is not known."""


class RunNamer:
    """Turns a logdir into ``ml.run.name``: relative to ``root``, then ``pattern``.

    Args:
        root: The directory runs are named relative to; default the working
            directory. A logdir outside it keeps its absolute path.
        pattern: Optional regex searched in the relative name (``/``
            separators); its first group, or the whole match, is the name.

    Example:
        >>> RunNamer("/logs", re.compile("fit/([^/]+)")).name("/logs/fit/exp_lr_0.01/20241015-143000")
        'exp_lr_0.01'
    """

    def __init__(self, root: str | None = None, pattern: re.Pattern[str] | None = None) -> None:
        self._root = os.path.abspath(root or os.getcwd())
        self._pattern = pattern
        self._cache: dict[str, str] = {}

    def name(self, logdir: str) -> str:
        """The run name of ``logdir`` (cached: logdirs do not change)."""
        cached = self._cache.get(logdir)
        if cached is not None:
            return cached
        full = os.path.abspath(logdir)
        relative = os.path.relpath(full, self._root)
        if relative.startswith(os.pardir):
            relative = full
        relative = relative.replace(os.sep, "/")
        if self._pattern is not None:
            match = self._pattern.search(relative)
            if match is not None:
                relative = match.group(1) if match.re.groups else match.group(0)
        self._cache[logdir] = relative
        return relative


class WriterRegistry:
    """Writer object -> run name, for the writers created while instrumented."""

    def __init__(self, namer: RunNamer) -> None:
        self.namer = namer
        self._runs: weakref.WeakKeyDictionary[object, str] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def add(self, writer: object, logdir: object) -> None:
        """Remember the run of ``writer``, made for ``logdir`` (a str or path-like)."""
        name = self.namer.name(os.fspath(logdir) if isinstance(logdir, (str, os.PathLike)) else str(logdir))
        with self._lock:
            self._runs[writer] = name

    def run_of(self, writer: object) -> str:
        """The run name of ``writer``, or :data:`UNKNOWN_RUN`."""
        try:
            return self._runs.get(writer, UNKNOWN_RUN)
        except TypeError:  # a writer type that cannot be weakly referenced
            return UNKNOWN_RUN


def is_validation_run(run: str) -> bool:
    """Keras's TensorBoard callback writes validation summaries to ``<log_dir>/validation``."""
    last = run.rstrip("/").rsplit("/", 1)[-1]
    return last in ("validation", "val", "eval")
