"""Every NVML call made on one daemon thread of its own, each waited for with a deadline.

A wedged driver blocks an NVML call for as long as it likes (minutes, or
for ever). Were the call made on a thread somebody waits for (the program's
in ``instrument()``, the endpoint's when a scrape collects, the interpreter's
at exit), that thread would hang with it: no scrape answered, no exit. So
:class:`Driver` makes the calls on one daemon thread, the only thread that
ever talks to NVML, and the caller waits at most a deadline:

- a call that misses its deadline raises :class:`Stuck` in the caller, and is
  logged once (one WARNING per stuck spell, one INFO when NVML answers again);
- while that call is still running, later calls raise :class:`Stuck` at once,
  without queueing behind it (a scrape then answers at once, without GPU
  points), and calls whose callers gave up are never started;
- nobody joins the thread: it is a daemon, and at exit a stuck call is left
  where it is.

One thread also keeps NVML's calls in order (a collection, the probe at
instrument time and the frees at uninstrument never overlap).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar

_LOG = logging.getLogger(__name__)
T = TypeVar("T")

READ_DEADLINE: Final = 2.0
"""Seconds a collection waits for NVML's reads (every device, every read: normally ~2 ms per device)."""
START_WAIT: Final = 2.0
"""Seconds ``instrument()`` waits for ``nvmlInit`` and the device listing before going on without them."""
CLOSE_WAIT: Final = 1.0
"""Seconds uninstrument and exit wait for NVML's frees and ``nvmlShutdown``."""
IDLE_EXIT: Final = 30.0
"""Seconds without a call after which the thread ends (the next call starts it again): no GPU, no thread."""


class Stuck(Exception):
    """An NVML call did not answer within its deadline (or an earlier one still has not)."""


class Job(Generic[T]):
    """One call to make on the driver thread."""

    def __init__(self, what: str, call: Callable[[], T]) -> None:
        self.what = what
        self.call = call
        self.done = threading.Event()
        self.abandoned = False  # the caller stopped waiting: do not start it
        self.result: T | None = None
        self.error: BaseException | None = None
        self.started = 0.0


class Driver:
    """The one thread that calls NVML, started on the first call."""

    def __init__(self, name: str = "otel_ml-nvml") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[Job[Any]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._overdue: Job[Any] | None = None  # the call that missed its deadline and still runs
        self._said_stuck = False

    @property
    def stuck(self) -> bool:
        """Whether a call that missed its deadline is still running."""
        return self._overdue is not None

    def submit(self, what: str, call: Callable[[], T]) -> Job[T]:
        """Queue ``call``; raises :class:`Stuck` at once while an overdue call still runs."""
        job: Job[T] = Job(what, call)
        with self._lock:
            if self._overdue is not None:
                raise Stuck(f"{self._overdue.what} has not returned")
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._jobs.put(job)
        return job

    def wait(self, job: Job[T], deadline: float, *, log: bool = True) -> T:
        """``job``'s result (or its exception), or :class:`Stuck` after ``deadline`` seconds."""
        if not job.done.wait(deadline):
            with self._lock:
                if not job.done.is_set():
                    job.abandoned = True
                    running = job.started > 0.0
                    if running and self._overdue is None:
                        self._overdue = job
                    first = not self._said_stuck
                    self._said_stuck = True
                    late = job if running else self._overdue
            if not job.done.is_set():
                if log and first:
                    _LOG.warning(
                        "otel_ml: NVML did not answer within %g s (%s); GPU metrics are left out of collections "
                        "until it answers. The program and the /metrics endpoint do not wait for it.",
                        deadline,
                        late.what if late is not None else job.what,
                    )
                raise Stuck(f"{job.what} did not answer within {deadline:g} s")
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]

    def call(self, what: str, call: Callable[[], T], deadline: float, *, log: bool = True) -> T:
        """:meth:`submit` then :meth:`wait`."""
        return self.wait(self.submit(what, call), deadline, log=log)

    def _run(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=IDLE_EXIT)
            except queue.Empty:
                with self._lock:  # submit() queues under this lock: nothing can slip in unseen
                    if self._jobs.empty():
                        self._thread = None
                        return
                continue
            with self._lock:
                if job.abandoned:
                    job.done.set()
                    continue
                job.started = time.monotonic()
            try:
                job.result = job.call()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, who decides
                job.error = exc
            job.done.set()
            with self._lock:
                recovered = self._overdue is job
                if recovered:
                    self._overdue = None
                    self._said_stuck = False
            if recovered:
                _LOG.info(
                    "otel_ml: NVML answered again (%s took %.1f s); GPU metrics are collected again",
                    job.what,
                    time.monotonic() - job.started,
                )

    def _after_fork_in_child(self) -> None:
        """The parent's thread does not exist here: start afresh (a stuck call stays the parent's)."""
        self._lock = threading.Lock()
        self._jobs = queue.SimpleQueue()
        self._thread = None
        self._overdue = None
        self._said_stuck = False


driver = Driver()
"""The process's one NVML thread: every GPU instrumentor and command shares it."""

os.register_at_fork(after_in_child=driver._after_fork_in_child)
