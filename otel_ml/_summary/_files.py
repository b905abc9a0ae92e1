"""Event files: finding them under logdirs, and following each one as it grows.

Finding (:class:`EventFileFinder`): each real file once, loops cut,
unreadable parts skipped. Symbolic links are not followed by default: a link
can lead anywhere (another user's runs, or ``/``, which would walk the whole
disk at each poll). With ``follow_symlinks`` they are followed, but only to
real paths under the roots' own real paths: a directory already walked is not
walked again and a file already found under another name is not followed
twice, so a link loop costs one visit. Each link not followed, and each
directory that cannot be listed, is logged once, not once per poll.

Following (:class:`FileFollower`): new events since the last read, with the
file closed in between. The follower keeps a byte offset (and the count of
records before it), so a poll opens the file only when it grew, reads the
complete records appended (framed by :mod:`otel_ml._summary._records`), and
closes it again: thousands of event files never hold thousands of
descriptors. Records are decoded with TensorBoard's protos and migrated to
the v2 (tensor) form by its ``data_compat``, so files from other writers
(tensorboardX, PyTorch's ``SummaryWriter``) read the same.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

from otel_ml._summary import _records

_LOG = logging.getLogger(__name__)


def is_event_file(name: str) -> bool:
    """TensorBoard's rule: an event file's name contains ``tfevents``."""
    return "tfevents" in name


# --- "reported in-process" markers ---------------------------------------------------------------
# An instrumented program reports its own event files; `otel-ml tensorboard` on the same logdir must not
# report them a second time. The program leaves a small marker beside each file it follows (a name without
# "tfevents", so TensorBoard ignores it); the bridge skips a file that has one, and says so once per run.


def marker_path(path: str) -> str:
    """The marker of event file ``path``: ``.otel_ml-<hash of its name>.reported`` in its directory."""
    directory, name = os.path.split(path)
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return os.path.join(directory, f".otel_ml-{digest}.reported")


def write_marker(path: str, info: dict[str, object]) -> None:
    """Mark ``path`` as reported by this process.

    Written to a new file of our own (``mkstemp``: created exclusively, never through a link) and renamed onto
    the marker's name: whatever a neighbour left under that name in a shared logdir (a symbolic link to one of
    the user's files, a FIFO that would block the program's ``create_file_writer``) is replaced, never written
    through.

    Raises:
        OSError: the directory cannot be written (the caller logs it once).
    """
    target = marker_path(path)
    try:
        mode = os.stat(path).st_mode & 0o666  # readable by whoever can read the event file (a bridge of another user)
    except OSError:
        mode = 0o644
    fd, temporary = tempfile.mkstemp(prefix=".otel_ml-", suffix=".tmp", dir=os.path.dirname(target) or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), mode)
            json.dump({"file": os.path.basename(path), **info}, handle)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


_MARKER_MAX = 65_536
"""A marker is about 100 bytes; a larger file under its name is not ours and is not read whole."""


def read_marker(path: str) -> dict[str, object] | None:
    """What the marker of ``path`` says, or None when there is none (or it is unreadable, or not a marker).

    Only a regular file is read (opened non-blocking, so a FIFO under the marker's name cannot hang the
    bridge), and at most :data:`_MARKER_MAX` bytes of it.
    """
    try:
        fd = os.open(marker_path(path), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, _MARKER_MAX + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) > _MARKER_MAX:
        return None
    try:
        found = json.loads(data.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError included
        return None
    return found if isinstance(found, dict) else None


class EventFileFinder:
    """Walks ``roots`` and yields the event files not yielded before.

    Args:
        roots: The logdirs.
        follow_symlinks: Follow symbolic links, to real paths under the roots' real paths only.
        log_prefix: Starts each log line (who is speaking: ``otel-ml tensorboard``).

    Example:
        >>> finder = EventFileFinder(["/no/such/dir"])
        >>> list(finder.new_files())
        []
    """

    def __init__(self, roots: Sequence[str], follow_symlinks: bool = False, log_prefix: str = "otel_ml") -> None:
        self.roots = [os.path.abspath(root) for root in roots]
        self.follow_symlinks = follow_symlinks
        self._real_roots = [os.path.realpath(root) for root in self.roots]
        self._prefix = log_prefix
        self._real_files: dict[str, str] = {}  # real path -> the path it was yielded as
        self._warned: set[str] = set()

    def new_files(self) -> Iterator[tuple[str, str]]:
        """``(path, directory)`` of every event file found for the first time."""
        walked: set[str] = set()
        for root in self.roots:
            for directory, subdirs, files in os.walk(root, onerror=self._unreadable, followlinks=self.follow_symlinks):
                real = os.path.realpath(directory)
                if real in walked:
                    subdirs[:] = []  # a loop, or a second link to a walked directory
                    continue
                walked.add(real)
                # Links that are not followed are never entered; real directories come first, so a run
                # reached both ways is named by its real path.
                subdirs[:] = sorted(
                    (name for name in subdirs if self._may_enter(os.path.join(directory, name))),
                    key=lambda name: (os.path.islink(os.path.join(directory, name)), name),
                )
                for name in sorted(files):
                    if is_event_file(name):
                        path = os.path.join(directory, name)
                        if self._may_enter(path):
                            yield from self._once(path, directory)

    def forget(self, path: str) -> None:
        """Forget ``path`` (its file is gone): found again, it is yielded again."""
        for real, found in list(self._real_files.items()):
            if found == path:
                del self._real_files[real]

    def _inside(self, real: str) -> bool:
        return any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in self._real_roots)

    def _may_enter(self, path: str) -> bool:
        """Whether the walk may go through ``path``: not a link, or a followed link to a real path inside."""
        if not os.path.islink(path):
            return True
        if not self.follow_symlinks:
            self._once_log(
                path,
                "%s: %s is a symbolic link; it is not followed (pass --follow-symlinks to follow links that stay "
                "under the logdirs). Logged once.",
                path,
            )
            return False
        real = os.path.realpath(path)
        if self._inside(real):
            return True
        self._once_log(
            path,
            "%s: %s is a symbolic link to %s, outside the logdirs; it is not followed (list that directory as a "
            "LOGDIR to export it). Logged once.",
            path,
            real,
        )
        return False

    def _once_log(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            _LOG.warning(message, self._prefix, *args)

    def _once(self, path: str, directory: str) -> Iterator[tuple[str, str]]:
        real = os.path.realpath(path)
        if real in self._real_files or not os.path.isfile(real):
            return
        self._real_files[real] = path
        yield path, directory

    def _unreadable(self, exc: OSError) -> None:
        where = str(exc.filename or exc)
        self._once_log(where, "%s: cannot list %s (%s); it is skipped. Logged once.", where, exc.strerror)


# --- following one file -----------------------------------------------------------------


_HEAD_BYTES = 64
"""Bytes kept of a file's start: its first record (TensorFlow's holds the file's creation time) tells a
rewritten file from the one that was read."""


class LocalFiles:
    """How a follower reaches its file: the local file system (``tf.io.gfile`` is the other one)."""

    @staticmethod
    def stat(path: str) -> tuple[int, int | None]:
        """``(size, inode)``; the inode is None where the file system has none."""
        found = os.stat(path)
        return found.st_size, found.st_ino

    @staticmethod
    def open(path: str) -> BinaryIO:
        """The file, opened for binary reading."""
        return open(path, "rb")


class FileFollower:
    """One event file.

    Args:
        path: The file.
        offset: Where reading starts (a state saved earlier); 0 for the start.
        records: Records before ``offset``.
        skip: Records to read but not return (a state that knows counts, not offsets).
        verify: Check every payload's CRC (see :func:`otel_ml._summary._records.read_records`).
        inode: The file's inode when ``offset`` was saved (None: unknown).
        head: The file's first bytes when ``offset`` was saved (None: unknown).
        files: How the file is reached (default the local file system).

    A file that was rewritten since (another inode, shorter than ``offset``,
    or other first bytes: a run restarted in the same directory, a copy put
    back) is read again from the start, with one log line: resuming at the
    old offset would lose its first records and frame the rest wrongly.
    """

    def __init__(
        self,
        path: str,
        offset: int = 0,
        records: int = 0,
        skip: int = 0,
        verify: bool = True,
        inode: int | None = None,
        head: bytes | None = None,
        files: Any = None,
    ) -> None:
        self.path = path
        self._verify = verify
        self._files = files or LocalFiles
        self.offset = offset
        self.records = records
        self._skip = skip
        self.inode = inode
        self.head = head
        self.kinds: dict[str, str] = {}  # tag -> plugin name, as its first metadata said
        # Written by a Keras TensorBoard callback during a fit the Keras instrumentor reports (decided when the
        # file is first seen, while that fit runs): its values feed no ml.train.* (otel_ml._core.reported_logdirs).
        self.claimed_by_keras = False
        self.tail = _records.END
        self.bad_records = 0
        self.bad_values = 0
        self.rewrites = 0
        self.reported = False  # for the owner: its one warning about this file's tail was logged
        self._size = -1

    def _restart(self, why: str) -> None:
        self.rewrites += 1
        log = _LOG.warning if self.rewrites == 1 else _LOG.debug
        log(
            "otel_ml: %s was rewritten (%s); it is read again from the start. Logged once per file.",
            self.path,
            why,
        )
        self.offset = self.records = self._skip = 0
        self.tail = _records.END
        self.head = None
        self._size = -1

    def read(self) -> list[Any]:
        """The events appended since the last call (migrated ``Event`` protos).

        Raises:
            OSError: the file cannot be opened or read now (it is tried again at the next call);
                ``FileNotFoundError`` when it is gone.
        """
        from tensorboard import data_compat
        from tensorboard.compat.proto import event_pb2

        size, inode = self._files.stat(self.path)
        if self.inode is not None and inode is not None and inode != self.inode:
            self._restart("another file now has its name")
        elif size < self.offset:
            self._restart(f"{size} bytes, shorter than the {self.offset} already read")
        self.inode = inode
        if size == self._size or size <= self.offset or self.tail == _records.CORRUPT:
            return []  # nothing new: the file is not even opened
        events: list[Any] = []
        with self._files.open(self.path) as handle:
            first = handle.read(_HEAD_BYTES)
            known = self.head
            if known is not None and self.offset and first[: len(known)] != known[: len(first)]:
                self._restart("its first record changed")
            if self.head is None or len(first) > len(self.head):
                self.head = first
            while True:
                chunk = _records.read_records(handle, self.offset, verify=self._verify)
                self.offset = chunk.offset
                self.tail = chunk.tail
                self.skipped_records(chunk.skipped)
                for record in chunk.records:
                    self.records += 1
                    if self.records <= self._skip:
                        continue
                    try:
                        event = event_pb2.Event.FromString(record)
                        for value in event.summary.value:
                            if value.WhichOneof("value") != "tensor":  # v1 (tensorboardX, PyTorch): migrate
                                event = data_compat.migrate_event(event)
                                break
                    except Exception:  # noqa: BLE001 - a record whose CRC holds but whose proto does not
                        self.skipped_records(1)
                        continue
                    for value in event.summary.value:
                        plugin = value.metadata.plugin_data.plugin_name
                        if plugin and value.tag not in self.kinds:
                            self.kinds[value.tag] = plugin
                    events.append(event)
                if not chunk.full:
                    break
        self._size = size  # a partial record is read again once the file grows
        return events

    def skipped_records(self, count: int) -> None:
        """Count ``count`` unreadable records skipped; log the first of this file."""
        if not count:
            return
        self.bad_records += count
        if self.bad_records == count:
            _LOG.warning(
                "otel_ml: %s has a corrupt record (checksum or encoding) before byte %d; it is skipped and "
                "the following records are read. Logged once per file.",
                self.path,
                self.offset,
            )

    def describe_tail(self) -> str | None:
        """A sentence about an unread tail, or None when every byte was read."""
        if self.tail == _records.CORRUPT:
            return f"{self.path} is corrupt after byte {self.offset} (a record header fails its checksum)"
        if self.tail == _records.PARTIAL:
            return f"{self.path} ends inside a record after byte {self.offset} (truncated, or still being written)"
        return None
