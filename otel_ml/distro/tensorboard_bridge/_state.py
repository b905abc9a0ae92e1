"""The bridge's state directory: how far each event file has been exported.

One JSON file, replaced atomically (write to a temporary file, then
``os.replace``), so a bridge killed mid-write leaves the previous state, never
a torn one. Each file's entry holds the records exported and the byte offset
after them; a restart resumes at the offset (a state without offsets, from an
older bridge, skips that many records instead).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Final

STATE_FILE: Final = "bridge_state.json"
_VERSION: Final = 1
_FORMAT: Final = '{"version": 1, "files": {PATH: {"records": N, "offset": BYTES}}}'


class StateError(Exception):
    """The state directory or file cannot be used; the message says what to do."""


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a record count")


class BridgeState:
    """Progress per event file (by path), persisted under ``directory``.

    Raises:
        StateError: the directory cannot be created or written, or the file is unreadable.
    """

    def __init__(self, directory: str) -> None:
        self.directory = os.path.abspath(directory)
        self._path = os.path.join(self.directory, STATE_FILE)
        self.files: dict[str, tuple[int, int | None]] = {}  # path -> (records, offset or None)
        self._dirty = False
        self._check_directory()
        self._load()

    def _check_directory(self) -> None:
        try:
            os.makedirs(self.directory, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".probe-", dir=self.directory)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise StateError(
                f"state directory {self.directory} cannot be created or written ({exc.strerror or exc}); "
                "pass a writable --state-dir"
            ) from None

    def _load(self) -> None:
        if not os.path.exists(self._path):
            return
        try:
            with open(self._path, encoding="utf-8") as handle:
                data = json.load(handle, parse_constant=_reject_constant)
            for path, entry in data["files"].items():
                records, offset = entry["records"], entry.get("offset")
                if not _count(records) or not (offset is None or _count(offset)):
                    raise ValueError(f"bad counts {entry!r} for {path!r}")
                self.files[str(path)] = (records, offset)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # Starting over would re-export everything: refuse instead, and say how to recover.
            raise StateError(
                f"bridge state file {self._path} is unreadable ({exc}); expected JSON {_FORMAT}. Fix it, or "
                "delete it to export every event file again from the start."
            ) from None

    def exported(self, path: str) -> tuple[int, int | None]:
        """``(records, offset)`` already exported from ``path``; offset None when only the count is known."""
        return self.files.get(path, (0, 0))

    def update(self, path: str, records: int, offset: int) -> None:
        """Note that ``path`` is exported up to ``offset`` (``records`` records)."""
        if self.files.get(path) != (records, offset):
            self.files[path] = (records, offset)
            self._dirty = True

    def save(self) -> None:
        """Write the state if it changed since the last save.

        Raises:
            OSError: it could not be written (the previous state stays as it was).
        """
        if not self._dirty:
            return
        files = {path: {"records": n, "offset": off} for path, (n, off) in sorted(self.files.items())}
        fd, tmp = tempfile.mkstemp(prefix=".state-", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"version": _VERSION, "files": files}, handle)
            os.replace(tmp, self._path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self._dirty = False


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 62
