"""A long call announces itself before it starts, so that what is in flight is seen while it runs.

A Paddle ``run()`` holds the GIL for its whole length: no other thread of the
process runs meanwhile, so no collection can see the run in progress, and
under a pre-fork server the worker's published ``ml.inference.active`` showed
the run only once it was over. Before a call that is expected to be long (the
model's previous run took over :data:`LONG_SECONDS`), the instrumentation
calls :func:`long_call_starting`; the distro's multiprocess publisher hooks
in here (:func:`listen`) and publishes there and then, in the calling
thread, with the call already counted as started. Without a listener the
check costs one truth test of a list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from otel_ml._core.guard import report

LONG_SECONDS: Final = 0.05
"""A run longer than this is announced next time: a publication (a few ms) is then a few percent of it at most."""

listeners: list[Callable[[], None]] = []


def listen(listener: Callable[[], None]) -> None:
    """Call ``listener()`` before each long call (once per listener)."""
    if listener not in listeners:
        listeners.append(listener)


def forget(listener: Callable[[], None]) -> None:
    """Stop calling ``listener``."""
    if listener in listeners:
        listeners.remove(listener)


def long_call_starting() -> None:
    """Tell every listener that a long call starts now; a listener's failure is reported, never raised."""
    for listener in list(listeners):
        try:
            listener()
        except Exception as exc:  # noqa: BLE001 - the user's call goes ahead whatever happens here
            report("announce.long_call", exc)
