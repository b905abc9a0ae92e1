"""Which logdirs this process writes, and the hooks around a writer's life.

A writer from ``tf.summary.create_file_writer`` keeps its logdir only inside
a TensorFlow op, so the instrumentor wraps ``create_file_writer`` and
remembers each writer's logdir and run here (weakly: a writer that the
program drops is forgotten with it). When the program gave no
``flush_millis``, the writer gets the shorter ``summary_flush_seconds``, so
the event file, and so the metrics, lag the training by at most that much.
Closing a writer reads its logdir once more, so nothing written before
``close()`` waits for the next read. The logdir is listed just before the
writer is created, so the follower can tell the writer's new file from
files that were there already (another container's with the same PID).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, Final

from otel_ml._core import reported_logdirs
from otel_ml._core._importlib_bootstrap_passthrough import passthrough
from otel_ml._core.guard import guarded
from otel_ml._summary import RunNamer

UNKNOWN_RUN: Final = "unknown"
"""The run of a writer created before instrumenting, whose logdir is not known."""


def _logdir_text(logdir: object) -> str | None:
    # bytes (which TensorFlow accepts, and the only way to name a logdir that is not UTF-8) as the OS decodes them:
    # non-UTF-8 bytes become surrogates, the file system still finds the directory, the run name escapes them.
    if isinstance(logdir, (str, bytes, os.PathLike)):
        return os.fsdecode(logdir)
    if hasattr(logdir, "numpy"):  # an eager string tensor
        value = logdir.numpy()
        return os.fsdecode(value) if isinstance(value, bytes) else None
    return None


class WriterRegistry:
    """Writer object -> (run name, logdir, claimed), for the writers created while instrumented.

    ``claimed``: the writer was created under a logdir claimed then (a Keras ``TensorBoard`` callback's, in a fit
    the Keras instrumentor reports; :mod:`otel_ml._core.reported_logdirs`).
    """

    def __init__(self, namer: RunNamer) -> None:
        self.namer = namer
        self._writers: weakref.WeakKeyDictionary[object, tuple[str, str, bool]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def add(self, writer: object, logdir: object) -> tuple[str, str] | None:
        """Remember ``writer``, made for ``logdir``; returns its (run, absolute logdir) if the logdir is a path."""
        text = _logdir_text(logdir)
        if text is None:
            return None
        known = (self.namer.name(text), text.rstrip("/") if "://" in text else os.path.abspath(text))
        with self._lock:
            try:
                self._writers[writer] = (*known, reported_logdirs.claimed(known[1]))
            except TypeError:  # a writer that cannot be weakly referenced: its logdir is followed all the same
                pass
        return known

    def run_of(self, writer: object) -> str:
        """The run name of ``writer``, or :data:`UNKNOWN_RUN`."""
        try:
            found = self._writers.get(writer)
        except TypeError:  # a writer type that cannot be weakly referenced
            return UNKNOWN_RUN
        return UNKNOWN_RUN if found is None else found[0]

    def logdir_of(self, writer: object) -> str | None:
        """The absolute logdir of ``writer``, if it was created while instrumented."""
        try:
            found = self._writers.get(writer)
        except TypeError:
            return None
        return None if found is None else found[1]

    def claimed(self, writer: object) -> bool:
        """Whether ``writer`` is a Keras ``TensorBoard`` callback's in a reported fit (feeds no ml.train.*)."""
        try:
            found = self._writers.get(writer)
        except TypeError:
            return False
        return found is not None and found[2]

    def alive(self) -> list[object]:
        """The registered writers the program still holds."""
        with self._lock:
            return list(self._writers.keys())


class WriterHooks:
    """The wrapt wrappers of ``create_file_writer`` and of a writer's ``close``.

    Both are :func:`passthrough` wrappers: the frame each adds is invisible to
    ``warnings``, so TensorFlow's own warnings keep pointing where it meant.

    Args:
        writers: Where writers are remembered.
        flush_millis: Given to writers created without ``flush_millis``; None leaves them alone.
        on_writer: Called with (run, logdir, names in logdir before) for every new writer (the follower
            starts watching).
        on_close: Called with the logdir of a closed writer (the follower reads it once more); None when
            the writer was made before instrumenting.
        list_names: Lists a logdir before a writer is created there (None: not listed).
    """

    def __init__(
        self,
        writers: WriterRegistry,
        flush_millis: int | None,
        on_writer: Callable[[str, str, frozenset[str] | None], None] | None,
        on_close: Callable[[str | None], object] | None,
        list_names: Callable[[str], frozenset[str] | None] | None = None,
    ) -> None:
        self._writers = writers
        self._flush_millis = flush_millis
        self._on_writer = on_writer
        self._on_close = on_close
        self._list = guarded("tf_summary.create_file_writer")(list_names) if list_names is not None else None
        self._register = guarded("tf_summary.create_file_writer")(self._register_writer)
        self._closed = guarded("tf_summary.writer_close")(self._after_close)
        self.create_file_writer = passthrough(self._create_enter, self._create_leave)
        self.close = passthrough(self._close_enter, self._close_leave)

    def _create_enter(self, instance: Any, args: Any, kwargs: Any) -> Any:
        # flush_millis is the third parameter: (logdir, max_queue, flush_millis, ...).
        if self._flush_millis is not None and len(args) < 3 and kwargs.get("flush_millis") is None:
            kwargs = {**kwargs, "flush_millis": self._flush_millis}
        logdir = args[0] if args else kwargs.get("logdir")
        before = None
        if self._list is not None:
            text = _logdir_text(logdir) if isinstance(logdir, (str, bytes, os.PathLike)) else None
            if text is not None:
                before = self._list(text.rstrip("/") if "://" in text else os.path.abspath(text))
        return (logdir, before), args, kwargs

    def _create_leave(self, state: Any, error: BaseException | None, writer: Any) -> None:
        if error is None:
            self._register(writer, state[0], state[1])

    def _register_writer(self, writer: object, logdir: object, before: frozenset[str] | None = None) -> None:
        known = self._writers.add(writer, logdir)
        if known is not None and self._on_writer is not None:
            self._on_writer(*known, before)

    @staticmethod
    def _close_enter(instance: Any, args: Any, kwargs: Any) -> Any:
        return (instance,), args, kwargs

    def _close_leave(self, state: Any, error: BaseException | None, result: Any) -> None:
        if error is None:
            self._closed(state[0])

    def _after_close(self, writer: object) -> None:
        if self._on_close is not None:  # a writer made before instrumenting: every followed file is read
            self._on_close(self._writers.logdir_of(writer))
