"""The background follower: what this process's writers wrote, read back from their event files.

TensorFlow serialises every recorded summary to the event file itself,
asynchronously and in C++; reading the files back costs the training step
nothing (no hook per write, no ``tf.py_function`` in a compiled step). The
reader is the bridge's (:mod:`otel_ml._summary`): one implementation for both.

TensorFlow flushes a writer only when a write finds its queue full or its
``flush_millis`` passed; a writer that stops writing (the epoch summaries of
Keras's callback) would keep its last values queued. So the thread also
flushes the open writers every ``flush_seconds``: a value written is exported
within that time plus one read interval (at most 1 s).

Only the files this process writes are followed: TensorFlow names them
``events.out.tfevents.<time>.<host>.<pid>.<n>.v2``, so old runs in a reused
logdir, and other processes writing there, are left alone.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable

from otel_ml._core.guard import guarded
from otel_ml._summary import FileFollower, SummaryExporter, export_events, is_event_file

_LOG = logging.getLogger(__name__)
_MAX_INTERVAL = 1.0


class LogdirWatcher:
    """Follows the event files this process writes in the logdirs it is told about.

    Args:
        exporter: Where values go.
        flush_seconds: How often ``flush`` runs; reads happen as often, but at least every second.
        flush: Flushes the open writers.
    """

    def __init__(self, exporter: SummaryExporter, flush_seconds: float, flush: Callable[[], None]) -> None:
        self._exporter = exporter
        self._flush_seconds = flush_seconds
        self._interval = min(flush_seconds, _MAX_INTERVAL)
        self._flush = guarded("tf_summary.flush")(flush)
        self._poll = guarded("tf_summary.follower")(self.read)
        self._pid = -1
        self._reset()

    def _reset(self) -> None:
        # Also the first thing a forked child does: the parent's files, lock and thread are not its own.
        self._pid = os.getpid()
        self._own = re.compile(rf"\.{self._pid}\.\d+\.v2")
        self._logdirs: dict[str, str] = {}  # absolute logdir -> run
        self._files: dict[str, tuple[FileFollower, str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, run: str, logdir: str) -> None:
        """Follow what this process writes in ``logdir`` under ``run``; starts the thread if needed."""
        if self._pid != os.getpid():
            self._reset()
        with self._lock:
            self._logdirs[logdir] = run
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(target=self._loop, name="otel_ml-tf_summary-follower", daemon=True)
            self._thread.start()

    def owned(self) -> bool:
        """False in a forked child until it creates a writer of its own: the parent's files are not its own."""
        return self._pid == os.getpid()

    def read(self, logdir: str | None = None) -> int:
        """Export what was appended to the followed files (of ``logdir`` only, if given); returns the count."""
        if not self.owned():
            return 0
        with self._lock:
            self._discover(logdir)
            total = 0
            for path, (follower, run) in list(self._files.items()):
                if logdir is None or os.path.dirname(path) == logdir:
                    total += self._read_file(follower, run)
            return total

    def _discover(self, only: str | None) -> None:
        for logdir, run in self._logdirs.items():
            if only is not None and logdir != only:
                continue
            try:
                names = os.listdir(logdir)
            except OSError:
                continue  # not created yet, or gone: nothing of ours to read there
            for name in names:
                path = os.path.join(logdir, name)
                if path not in self._files and is_event_file(name) and self._own.search(name):
                    # Headers are checked; payload CRCs are not: TensorFlow in this process writes them.
                    self._files[path] = (FileFollower(path, verify=False), run)

    def _read_file(self, follower: FileFollower, run: str) -> int:
        try:
            events = follower.read()
        except OSError as exc:
            _LOG.debug("otel_ml: cannot read %s now (%s)", follower.path, exc)
            return 0
        return export_events(self._exporter, follower, run, events) if events else 0

    def _loop(self) -> None:
        next_flush = time.monotonic() + self._flush_seconds
        while not self._stop.wait(self._interval):
            if time.monotonic() >= next_flush:
                next_flush = time.monotonic() + self._flush_seconds
                self._flush()
            self._poll()

    def stop(self) -> None:
        """Stop the thread (uninstrument); a later :meth:`watch` does not restart it."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
