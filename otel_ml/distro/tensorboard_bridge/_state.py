"""The bridge's state directory: how far each event file has been exported.

One JSON file, replaced atomically (write to a temporary file, then
``os.replace``), so a bridge killed mid-write leaves the previous state, never
a torn one. Each file's entry holds the records exported and the byte offset
after them, with the file's inode and first bytes (so that a file rewritten
since is read from its start); a restart resumes at the offset (a state
without offsets, from an older bridge, skips that many records instead).

One bridge per state directory: the directory is locked (``fcntl.flock`` on
``bridge.lock``, released by the kernel when the process ends, however it
ends). A second bridge on it would export everything twice; it stops with
:class:`StateInUse` instead.
"""

from __future__ import annotations

import binascii
import contextlib
import fcntl
import json
import os
import tempfile
from typing import Final, NamedTuple

STATE_FILE: Final = "bridge_state.json"
LOCK_FILE: Final = "bridge.lock"
_VERSION: Final = 1
_FORMAT: Final = '{"version": 1, "files": {PATH: {"records": N, "offset": BYTES}}}'


class StateError(Exception):
    """The state directory or file cannot be used; the message says what to do."""


class StateInUse(StateError):
    """Another bridge holds the state directory."""


class Progress(NamedTuple):
    """How far one file was exported."""

    records: int
    offset: int | None  # None: an older state that kept counts only
    inode: int | None = None
    head: bytes | None = None


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
        self.files: dict[str, Progress] = {}
        self.dirty = False
        self._lock_fd: int | None = None
        self._check_directory()
        self._lock()
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    def _lock(self) -> None:
        path = os.path.join(self.directory, LOCK_FILE)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StateError(f"cannot open {path} ({exc.strerror or exc}); pass a writable --state-dir") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StateInUse(
                f"state directory {self.directory} is in use by another otel-ml tensorboard (pid {holder}); "
                "two bridges on one state would export every value twice: stop the other one, or give this one "
                "its own --state-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def close(self) -> None:
        """Release the directory (the process's end releases it too)."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)

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
                records, offset, inode, head = (
                    entry["records"],
                    entry.get("offset"),
                    entry.get("inode"),
                    entry.get("head"),
                )
                if not _count(records) or not all(value is None or _count(value) for value in (offset, inode)):
                    raise ValueError(f"bad counts {entry!r} for {path!r}")
                self.files[str(path)] = Progress(
                    records, offset, inode, None if head is None else binascii.unhexlify(str(head))
                )
        except (OSError, ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            # Starting over would re-export everything: refuse instead, and say how to recover.
            raise StateError(
                f"bridge state file {self._path} is unreadable ({exc}); expected JSON {_FORMAT}. Fix it, or "
                "delete it to export every event file again from the start."
            ) from None

    def exported(self, path: str) -> Progress:
        """What was already exported from ``path``; offset None when only the count is known."""
        return self.files.get(path, Progress(0, 0))

    def update(self, path: str, progress: Progress) -> bool:
        """Note that ``path`` is exported as far as ``progress`` says; returns whether that is news."""
        if self.files.get(path) == progress:
            return False
        self.files[path] = progress
        self.dirty = True
        return True

    def forget(self, path: str) -> None:
        """``path`` is gone: drop its entry."""
        if self.files.pop(path, None) is not None:
            self.dirty = True

    def save(self) -> None:
        """Write the state if it changed since the last save.

        Raises:
            OSError: it could not be written (the previous state stays as it was).
        """
        if not self.dirty:
            return
        files = {path: _entry(progress) for path, progress in sorted(self.files.items())}
        fd, tmp = tempfile.mkstemp(prefix=".state-", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"version": _VERSION, "files": files}, handle)
            os.replace(tmp, self._path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self.dirty = False


def _entry(progress: Progress) -> dict[str, object]:
    entry: dict[str, object] = {"records": progress.records, "offset": progress.offset}
    if progress.inode is not None:
        entry["inode"] = progress.inode
    if progress.head is not None:
        entry["head"] = progress.head.hex()
    return entry


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 62
