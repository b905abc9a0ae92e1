"""The deployment's endpoint process: one ``/metrics`` for every worker, served where no request is.

Started by the first worker that publishes, and again by any worker if it
dies (:mod:`._spawn`), it holds the directory's lock, serves the merged
points of every process on the embedded endpoint's address
(``OTEL_EXPORTER_PROMETHEUS_HOST``/``_PORT``, default 127.0.0.1:9464) with
the same translation and exemplars, and writes the URL it serves to
``<directory>/endpoint.url``. A scrape reads the published files and never
waits for a worker: a worker busy in a model, or holding its GIL in a long
run, only makes its own numbers up to one publication interval old. It exits
within a second once the deployment's owner (the server's master) and every
process that published are gone, removing the directory when otel_ml made it.

A restarted endpoint process says so once, in the server's log: one WARNING
when it serves again (which process died, which serves now), or one ERROR when
it cannot (the port taken by another program), after which the workers try
again with a back-off and nothing more is logged until it serves.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import shutil
import signal
import threading
import time

from prometheus_client import CollectorRegistry

from otel_ml.distro.endpoint._app import make_app
from otel_ml.distro.endpoint._exemplars import ExemplarCollector
from otel_ml.distro.endpoint._history import PAGE_INTERVAL, PAGE_POINTS, HistorySampler, MetricHistory
from otel_ml.distro.endpoint._reader import ALLOWED_HOSTS, HOST, PORT, WORKER_RESOURCE_ATTRIBUTES
from otel_ml.distro.endpoint._server import EmbeddedServer, EndpointUnavailable, serving_only
from otel_ml.distro.endpoint._slow_steps import SlowStepBuffer
from otel_ml.distro.multiprocess._merge import Directory, alive
from otel_ml.distro.multiprocess._spawn import LOCK_NAME, read_state, retry_delay, write_state

_LOG = logging.getLogger("otel_ml.distro.multiprocess")
URL_FILE = "endpoint.url"
_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)
_WHO = "the multiprocess endpoint process"
ORPHAN_GRACE = 10.0  # seconds with neither the owner nor any publishing process alive


def _hold_lock(directory: str, lock_fd: int | None) -> int | None:
    """The directory's lock, held for this process's life: inherited from the starter, or taken here."""
    import fcntl

    if lock_fd is None:
        lock_fd = os.open(os.path.join(directory, LOCK_NAME), os.O_RDWR | os.O_CREAT | _NO_FOLLOW, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # already ours when inherited: a no-op
    except OSError:
        os.close(lock_fd)
        return None
    return lock_fd


def _address_problem(exc: EndpointUnavailable) -> str:
    """``127.0.0.1:9464 (Address already in use)`` out of the server's one line."""
    found = re.search(r"cannot serve /metrics on (.*?); choose another", str(exc))
    return found.group(1) if found else str(exc)


def serve(directory: str, owner: int, remove_directory: bool, lock_fd: int | None = None) -> int:
    """Serve ``directory`` until ``owner`` exits; 0 also when another endpoint process serves it already."""
    lock = _hold_lock(directory, lock_fd)
    if lock is None:
        return 0  # another worker's endpoint process won
    os.ftruncate(lock, 0)
    os.pwrite(lock, f"{os.getpid()}\n".encode(), 0)  # who serves, for whoever looks
    state = read_state(directory, owner)
    died = state.get("serving")  # the last endpoint process that served: it left the lock without stopping
    attempts = int(state.get("attempts", 1))
    source = Directory(directory, owner)
    scrape_lock = threading.Lock()
    collector = ExemplarCollector(resource_attribute_filter=WORKER_RESOURCE_ATTRIBUTES.__contains__)

    def refresh() -> None:
        with scrape_lock:
            collector.add_metrics_data(source.merged().metrics_data())

    collector.callback = refresh
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    # The same server as in one process: its Host check, and the live page over the merged points.
    interval = PAGE_INTERVAL.resolve(None)
    history = MetricHistory(interval, PAGE_POINTS.resolve(None)) if interval > 0 else None
    app = make_app(registry, SlowStepBuffer(1), history)
    server = EmbeddedServer(HOST.resolve(None), PORT.resolve(None), app, ALLOWED_HOSTS.resolve(None) or ())
    try:
        with serving_only("otel_ml multiprocess endpoint"):
            server.start()
    except EndpointUnavailable as exc:
        if attempts <= 1:  # one line per episode: the workers' next starts (with a back-off) are quiet
            _LOG.error(
                "otel_ml: %s cannot serve /metrics on %s. The workers go on publishing and try again in %g s, "
                "then less and less often (at most every %g s), without logging; choose another address with "
                "OTEL_EXPORTER_PROMETHEUS_HOST or port with OTEL_EXPORTER_PROMETHEUS_PORT.",
                f"the multiprocess endpoint process (pid {died}) died and its successor" if died else _WHO,
                _address_problem(exc),
                retry_delay(1),
                retry_delay(99),
            )
        return 1
    sampler = HistorySampler(registry.collect, history).start() if history is not None else None
    url_file = os.path.join(directory, URL_FILE)
    with open(url_file + ".tmp", "w", encoding="utf-8") as out:
        out.write(server.url + "\n")
    os.replace(url_file + ".tmp", url_file)
    write_state(directory, {"owner": owner, "serving": os.getpid()})
    failed = f" after {attempts - 1} failed start{'s' if attempts > 2 else ''}" if attempts > 1 else ""
    if died:
        _LOG.warning(
            "otel_ml: the multiprocess endpoint process (pid %s) of %s died; restarted%s as pid %d, serving %s "
            "with every total kept",
            died,
            directory,
            failed,
            os.getpid(),
            server.url,
        )
    elif failed:
        _LOG.warning("otel_ml: %s (pid %d) serves %s%s", _WHO, os.getpid(), server.url, failed)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    owner_seen = alive(owner, "")
    orphaned_since: float | None = None
    while not stopped.wait(0.5):
        # The owner is the master. A master that daemonized after otel_ml started (gunicorn --daemon) has
        # another pid: its deployment lives on while any of its processes publishes, and across the short
        # gap of a recycled worker.
        if alive(owner, ""):
            owner_seen, orphaned_since = True, None
        elif source.any_live():
            orphaned_since = None
        elif owner_seen:
            break
        elif orphaned_since is None:
            orphaned_since = time.monotonic()
        elif time.monotonic() - orphaned_since > ORPHAN_GRACE:
            break
    if sampler is not None:
        sampler.stop()
    server.stop()
    with contextlib.suppress(OSError):
        os.unlink(url_file)
    with contextlib.suppress(OSError):
        write_state(directory, None)  # stopped, not dead: nothing to restart
    if remove_directory:
        shutil.rmtree(directory, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m otel_ml.distro.multiprocess", description=__doc__)
    parser.add_argument("--dir", required=True, help="the deployment's multiprocess directory")
    parser.add_argument("--owner", type=int, required=True, help="the pid whose exit ends the deployment")
    parser.add_argument("--remove-dir", action="store_true", help="remove the directory at the end")
    parser.add_argument("--lock-fd", type=int, help="the directory's lock, taken by the starter and inherited")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return serve(os.path.abspath(args.dir), args.owner, args.remove_dir, args.lock_fd)
