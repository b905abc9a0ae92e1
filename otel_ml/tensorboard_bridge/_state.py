"""The bridge's state directory: how far each event file has been exported.

One JSON file, replaced atomically (write to a temporary file, then
``os.replace``), so a bridge killed mid-write leaves the previous state, never
a torn one. A restart skips the records each file had already exported.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from typing import Final

_LOG = logging.getLogger(__name__)
STATE_FILE: Final = "bridge_state.json"
_VERSION: Final = 1


class BridgeState:
    """Records exported per event file (by absolute path), persisted under ``directory``."""

    def __init__(self, directory: str) -> None:
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self._path = os.path.join(self.directory, STATE_FILE)
        self.records: dict[str, int] = {}
        self._dirty = False
        self._load()

    def _load(self) -> None:
        if not os.path.exists(self._path):
            return
        try:
            with open(self._path, encoding="utf-8") as handle:
                data = json.load(handle)
            files = data["files"]
            self.records = {str(path): int(entry["records"]) for path, entry in files.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # Starting over would re-export everything: refuse instead, and say how to recover.
            raise ValueError(
                f"bridge state file {self._path} is unreadable ({exc}); expected JSON "
                '{"version": 1, "files": {PATH: {"records": N}}}. Fix it, or delete it to export '
                "every event file again from the start."
            ) from None

    def exported(self, path: str) -> int:
        """How many records of ``path`` were already exported."""
        return self.records.get(path, 0)

    def update(self, path: str, records: int) -> None:
        """Note that the first ``records`` records of ``path`` are exported."""
        if self.records.get(path) != records:
            self.records[path] = records
            self._dirty = True

    def save(self) -> None:
        """Write the state if it changed since the last save."""
        if not self._dirty:
            return
        data = {"version": _VERSION, "files": {path: {"records": n} for path, n in sorted(self.records.items())}}
        fd, tmp = tempfile.mkstemp(prefix=".state-", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle)
            os.replace(tmp, self._path)
        except BaseException:
            os.unlink(tmp)
            raise
        self._dirty = False
