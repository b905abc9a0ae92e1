"""Event files: finding them under logdirs, and following each one as it grows.

Finding (:class:`EventFileFinder`): each real file once, loops cut,
unreadable parts skipped. Symbolic links are followed (a logdir made of links
to runs is common), but a directory already walked is not walked again and a
file already found under another name is not followed twice, so a link loop
costs one visit. A directory that cannot be listed is skipped with one
warning, not one per poll.

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

import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

from otel_ml._summary import _records

_LOG = logging.getLogger(__name__)


def is_event_file(name: str) -> bool:
    """TensorBoard's rule: an event file's name contains ``tfevents``."""
    return "tfevents" in name


class EventFileFinder:
    """Walks ``roots`` and yields the event files not yielded before.

    Example:
        >>> finder = EventFileFinder(["/no/such/dir"])
        >>> list(finder.new_files())
        []
    """

    def __init__(self, roots: Sequence[str]) -> None:
        self.roots = [os.path.abspath(root) for root in roots]
        self._real_files: set[str] = set()
        self._warned: set[str] = set()

    def new_files(self) -> Iterator[tuple[str, str]]:
        """``(path, directory)`` of every event file found for the first time."""
        walked: set[str] = set()
        for root in self.roots:
            for directory, subdirs, files in os.walk(root, onerror=self._unreadable, followlinks=True):
                real = os.path.realpath(directory)
                if real in walked:
                    subdirs[:] = []  # a loop, or a second link to a walked directory
                    continue
                walked.add(real)
                # Real directories first, so a run reached both ways is named by its real path.
                subdirs.sort(key=lambda name: (os.path.islink(os.path.join(directory, name)), name))
                for name in sorted(files):
                    if is_event_file(name):
                        yield from self._once(os.path.join(directory, name), directory)

    def _once(self, path: str, directory: str) -> Iterator[tuple[str, str]]:
        real = os.path.realpath(path)
        if real in self._real_files or not os.path.isfile(real):
            return
        self._real_files.add(real)
        yield path, directory

    def _unreadable(self, exc: OSError) -> None:
        where = str(exc.filename or exc)
        if where not in self._warned:
            self._warned.add(where)
            _LOG.warning("otel-ml tensorboard: cannot list %s (%s); it is skipped. Logged once.", where, exc.strerror)


# --- following one file -----------------------------------------------------------------


class FileFollower:
    """One event file.

    Args:
        path: The file.
        offset: Where reading starts (a state saved earlier); 0 for the start.
        records: Records before ``offset``.
        skip: Records to read but not return (a state that knows counts, not offsets).
        verify: Check every payload's CRC (see :func:`otel_ml._summary._records.read_records`).
    """

    def __init__(self, path: str, offset: int = 0, records: int = 0, skip: int = 0, verify: bool = True) -> None:
        self.path = path
        self._verify = verify
        self.offset = offset
        self.records = records
        self._skip = skip
        self.kinds: dict[str, str] = {}  # tag -> plugin name, as its first metadata said
        self.tail = _records.END
        self.bad_records = 0
        self.bad_values = 0
        self.reported = False  # for the owner: its one warning about this file's tail was logged
        self._size = -1

    def read(self) -> list[Any]:
        """The events appended since the last call (migrated ``Event`` protos).

        Raises:
            OSError: the file cannot be opened or read now (it is tried again at the next call).
        """
        from tensorboard import data_compat
        from tensorboard.compat.proto import event_pb2

        size = os.stat(self.path).st_size
        if size == self._size or size <= self.offset or self.tail == _records.CORRUPT:
            return []  # nothing new: the file is not even opened
        events: list[Any] = []
        with open(self.path, "rb") as handle:
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
