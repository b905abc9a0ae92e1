"""Following one event file with TensorBoard's own reader.

``RawEventFileLoader`` yields the records appended since its last call and
stops quietly at a truncated or corrupt record. Counting the bytes of the
records it yields (a TFRecord is its payload plus 16 bytes of framing) tells
where it stopped, so a file whose size is larger than what was read, and
that is no longer growing, is reported as truncated or corrupt.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

from tensorboard import data_compat
from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto import event_pb2

_LOG = logging.getLogger(__name__)
_FRAMING = 16  # length (8) + length CRC (4) + data CRC (4)


class FileFollower:
    """One event file: skips the ``already`` records exported before, yields the rest."""

    def __init__(self, path: str, already: int) -> None:
        self.path = path
        self.records = 0
        self._skip = already
        self._bytes = 0
        self._last_size = -1
        self.bad = False
        self.kinds: dict[str, str] = {}  # tag -> plugin name, as its first metadata said
        self._loader = RawEventFileLoader(path)

    def events(self) -> Iterator[Any]:
        """Events not exported yet, migrated to the v2 (tensor) form by TensorBoard's data_compat."""
        for record in self._loader.Load():
            self.records += 1
            self._bytes += len(record) + _FRAMING
            event = data_compat.migrate_event(event_pb2.Event.FromString(record))
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name
                if plugin:
                    self.kinds.setdefault(value.tag, plugin)
            if self.records > self._skip:
                yield event

    def check_tail(self, final: bool) -> bool:
        """True (once) when bytes after the last good record stay unreadable.

        Args:
            final: No further poll will come (``--once``): an unread tail is bad now.
        """
        if self.bad:
            return False
        try:
            size = os.path.getsize(self.path)
        except OSError:
            return False
        stuck = size > self._bytes and (final or size == self._last_size)
        self._last_size = size
        if stuck:
            self.bad = True
            _LOG.warning(
                "otel-ml tensorboard: %s is truncated or corrupt after byte %d of %d; its %d readable "
                "events are exported and the rest of the file is skipped",
                self.path,
                self._bytes,
                size,
                self.records,
            )
        return stuck
