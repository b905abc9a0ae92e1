"""Finding event files under logdirs: each real file once, loops cut, unreadable parts skipped.

Symbolic links are followed (a logdir made of links to runs is common), but a
directory already walked is not walked again and a file already found under
another name is not followed twice, so a link loop costs one visit. A
directory that cannot be listed is skipped with one warning, not one per poll.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence

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
