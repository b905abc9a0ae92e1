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

Only the files this process's writers created are followed. TensorFlow
names them ``events.out.tfevents.<time>.<host>.<pid>.<n>.v2``, but a PID
alone proves nothing: PIDs repeat across containers sharing a logdir (every
pod's trainer may be PID 1), and a restarted container leaves its files
behind. So the logdir is listed just before each writer is created, and a
file is ours when it carries this host and PID *and* was not there before
(the writer creates its file when it is made). Writers created before
instrumenting are found by the event files this process holds open
(``/proc/self/fd``), so their files are followed too.

Beside each file it follows, the follower leaves a marker
(``.otel_ml-<hash>.reported``, see :func:`otel_ml._summary._files.marker_path`):
an ``otel-ml tensorboard`` bridge on the same logdir skips marked files, so
running both never counts a value twice.

Logdirs on other file systems (``ram://``, ``gs://``, ``s3://``,
``hdfs://``) are read through ``tf.io.gfile``, TensorFlow's own file API;
one that it cannot list is logged once, saying it is not followed.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from typing import BinaryIO

from otel_ml._core import reported_logdirs
from otel_ml._core.guard import guarded
from otel_ml._summary import FileFollower, SummaryExporter, export_events, is_event_file
from otel_ml._summary._files import LocalFiles, write_marker

_LOG = logging.getLogger(__name__)
_MAX_INTERVAL = 1.0
_FD_DIR = "/proc/self/fd"


def is_remote(logdir: str) -> bool:
    """A logdir with a scheme (``ram://``, ``gs://``, ``s3://``, ``hdfs://``): read through ``tf.io.gfile``."""
    return "://" in logdir


class GFiles:
    """:class:`~otel_ml._summary._files.LocalFiles` through ``tf.io.gfile``, for logdirs with a scheme."""

    @staticmethod
    def listdir(path: str) -> list[str]:
        """The names in ``path``."""
        import tensorflow as tf

        return list(tf.io.gfile.listdir(path))

    @staticmethod
    def stat(path: str) -> tuple[int, int | None]:
        """``(size, None)``: these file systems have no inodes."""
        import tensorflow as tf

        try:
            return int(tf.io.gfile.stat(path).length), None
        except tf.errors.NotFoundError:
            raise FileNotFoundError(path) from None

    @staticmethod
    def open(path: str) -> BinaryIO:
        """The file, opened for binary reading."""
        import tensorflow as tf

        return tf.io.gfile.GFile(path, "rb")  # type: ignore[no-any-return]


def _listdir(logdir: str) -> list[str]:
    return GFiles.listdir(logdir) if is_remote(logdir) else os.listdir(logdir)


def open_event_files() -> list[str]:
    """The event files this process holds open: those of its live writers (Linux; empty elsewhere)."""
    found = []
    try:
        descriptors = os.listdir(_FD_DIR)
    except OSError:
        return []
    for fd in descriptors:
        try:
            target = os.readlink(os.path.join(_FD_DIR, fd))
        except OSError:
            continue
        if target.startswith("/") and is_event_file(os.path.basename(target)):
            found.append(target)
    return sorted(set(found))


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
        self._own = re.compile(rf"\.{re.escape(socket.gethostname())}\.{self._pid}\.\d+\.v2$")
        self._logdirs: dict[str, str] = {}  # absolute logdir -> run
        self._before: dict[str, set[str]] = {}  # logdir -> names that were there before our writers: not ours
        self._unlisted: set[str] = set()  # logdirs whose "not followed" line was logged
        self._marker_failed = False
        self._unmarked_logged = False
        self._files: dict[str, tuple[FileFollower, str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def names(self, logdir: str) -> frozenset[str] | None:
        """The names in ``logdir`` now (just before a writer is created there); None if it cannot be listed."""
        try:
            return frozenset(_listdir(logdir))
        except FileNotFoundError:
            return frozenset()  # not created yet: the writer creates it, and everything in it is ours
        except Exception:  # noqa: BLE001 - not listable (tf.io.gfile's NotFoundError included)
            return None

    def watch(self, run: str, logdir: str, before: frozenset[str] | None = None, path: str | None = None) -> None:
        """Follow what this process writes in ``logdir`` under ``run``; starts the thread if needed.

        Args:
            run: The run name.
            logdir: The writer's logdir.
            before: The names in ``logdir`` just before the writer was created: none of them is ours.
            path: One file known to be ours (a writer's open file).
        """
        if self._pid != os.getpid():
            self._reset()
        with self._lock:
            self._logdirs[logdir] = run
            if before:
                mine = {os.path.basename(p) for p in self._files if self._dirname(p) == logdir}
                self._before.setdefault(logdir, set()).update(before - mine)
            if path is not None and path not in self._files:
                self._files[path] = (self._follower(path), run)
                self._mark(path, run)
            # Claim (and mark) the writer's new file now, before the program writes a value to it.
            self._discover(logdir)
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
                if logdir is None or self._dirname(path) == logdir:
                    total += self._read_file(follower, run)
            return total

    def adopt_open_writers(self, name_run: Callable[[str], str]) -> list[str]:
        """Follow the event files this process holds open (writers created before instrumenting).

        Returns:
            Their logdirs.
        """
        logdirs = []
        if self._pid != os.getpid():
            self._reset()
        for path in open_event_files():
            logdir = os.path.dirname(path)
            # TensorFlow's own files only (tensorboardX and PyTorch writers hold theirs open too).
            if path not in self._files and self._own.search(os.path.basename(path)):
                self.watch(name_run(logdir), logdir, path=path)
                logdirs.append(logdir)
        return logdirs

    @staticmethod
    def _dirname(path: str) -> str:
        return path.rsplit("/", 1)[0] if is_remote(path) else os.path.dirname(path)

    @staticmethod
    def _follower(path: str) -> FileFollower:
        # Headers are checked; payload CRCs are not: TensorFlow in this process writes them.
        follower = FileFollower(path, verify=False, files=GFiles if is_remote(path) else LocalFiles)
        # Seen when its writer is created: a file made under a logdir claimed now is a Keras TensorBoard callback's
        # in a fit the Keras instrumentor reports (the claim ends with the fit; the file keeps the decision).
        follower.claimed_by_keras = reported_logdirs.claimed(LogdirWatcher._dirname(path))
        return follower

    def _discover(self, only: str | None) -> None:
        for logdir, run in self._logdirs.items():
            if only is not None and logdir != only:
                continue
            try:
                names = _listdir(logdir)
            except FileNotFoundError:
                continue  # not created yet, or gone: nothing of ours to read there
            except Exception as exc:  # noqa: BLE001 - a file system tf.io.gfile cannot list (no plugin, no access)
                self._not_followed(logdir, exc)
                continue
            before = self._before.get(logdir, ())
            for name in names:
                path = logdir.rstrip("/") + "/" + name if is_remote(logdir) else os.path.join(logdir, name)
                if path not in self._files and is_event_file(name) and self._own.search(name) and name not in before:
                    self._files[path] = (self._follower(path), run)
                    self._mark(path, run)

    def _mark(self, path: str, run: str) -> None:
        """Leave the marker that tells ``otel-ml tensorboard`` on this logdir that the file is reported here."""
        if is_remote(path):
            return
        if not reported_logdirs.metrics_delivered():
            # Nothing reads this process's metrics (its /metrics port taken, e.g. by that very bridge): a marker
            # would make the bridge skip values that nobody delivers.
            if not self._unmarked_logged:
                self._unmarked_logged = True
                _LOG.warning(
                    "otel_ml: this process's metrics are delivered nowhere (no /metrics endpoint, no push exporter), "
                    "so its tf.summary event files are not marked as reported here: an otel-ml tensorboard bridge on "
                    "the same logdir exports them. Logged once."
                )
            return
        try:
            write_marker(path, {"host": socket.gethostname(), "pid": self._pid, "run": run})
        except OSError as exc:
            if not self._marker_failed:
                self._marker_failed = True
                _LOG.warning(
                    "otel_ml: cannot leave the reported-here marker beside %s (%s); an otel-ml tensorboard bridge "
                    "on this logdir would export its values a second time. Logged once.",
                    path,
                    exc.strerror or exc,
                )

    def _not_followed(self, logdir: str, exc: BaseException) -> None:
        # The writer was made, so its logdir exists: tf.io.gfile's NotFoundError here is a file system it cannot
        # reach (an unknown scheme reads as "Could not find directory").
        if logdir not in self._unlisted:
            self._unlisted.add(logdir)
            _LOG.warning(
                "otel_ml: tf.summary logdir %s is not followed: it cannot be listed (%s: %s); its values are not "
                "exported. Logged once.",
                logdir,
                type(exc).__name__,
                str(exc).splitlines()[0] if str(exc) else "",
            )

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
