"""Keep the deployment's endpoint process running: started by the first process to publish, restarted by any.

The endpoint process holds an exclusive lock on ``<directory>/endpoint.lock``
for its whole life, so "is one running?" is a non-blocking lock attempt.
The process that wins the attempt starts the endpoint process *holding* the
lock: the child inherits the locked descriptor (``pass_fds``) and the starter
closes its own copy, so the lock passes from one to the other without a free
moment, and four workers that find the endpoint dead at the same moment
start exactly one. Every publishing process looks once a second
(:func:`keep_endpoint`, from its publication thread, never a request's), so an
endpoint process that died (OOM-killed, ``SIGKILL``ed, crashed) is back
within about a second and a Python start: the same command and environment
(address, port, allowed hosts), the same totals (they are on disk).

Each start is recorded in ``<directory>/endpoint.state`` (starts since the
endpoint last served, and when the next may be made: 2 s after the first,
then twice as long each time, at most a minute); the endpoint process
records there that it serves. An endpoint that cannot serve (its port taken
by another program, a broken environment) is therefore tried again with a
back-off, not every second, and logs one ERROR for the whole episode
(:mod:`._endpoint`).

The endpoint process runs the same Python and otel_ml as the worker, never
instrumented itself, in its own session (a Ctrl-C or a signal to the server's
process group does not reach it), and stops by itself once the deployment's
owner (the master) is gone: its life never depends on the process that
started it. That process is its parent: if the endpoint dies first, the parent
reaps it at its next look; if the parent exits first (a worker recycled by
``--max-requests``), the kernel hands it to init (or the container's
subreaper), which reaps it. The start is a fork and exec in C
(``subprocess`` without ``preexec_fn``): no Python code runs in the child,
whatever lock another thread holds; a Python ``os.fork()`` in another thread
waits until the starter has closed its copy of the locked descriptor, so no
other child inherits the lock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from typing import Any

from otel_ml.distro.multiprocess._mode import ENDPOINT_MARK, Deployment

_LOG = logging.getLogger(__name__)

LOCK_NAME = "endpoint.lock"
STATE_NAME = "endpoint.state"
CHECK_EVERY = 1.0  # seconds between two looks of one process at the endpoint
FIRST_RETRY = 2.0  # seconds after a start before the next may be made, doubled at each start that did not serve
MAX_RETRY = 60.0
_AUTO_INSTRUMENTATION = os.path.join("opentelemetry", "instrumentation", "auto_instrumentation")
_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)

# Held from taking endpoint.lock to closing this process's copy; a fork in another thread waits for it.
# Reentrant: where subprocess forks in Python (gevent's, monkey-patched), the at-fork hook runs in the
# very thread that holds it, whose child is the endpoint process itself.
_lock = threading.RLock()
_children: list[subprocess.Popen[bytes]] = []  # endpoint processes this process started, reaped when they exit
_looked = [0.0]  # monotonic time of this process's last look
_owner_seen: set[int] = set()  # owners this process saw alive


def _open_lock(directory: str) -> int:
    return os.open(os.path.join(directory, LOCK_NAME), os.O_RDWR | os.O_CREAT | _NO_FOLLOW, 0o600)


def _take(directory: str) -> int | None:
    """The directory's lock file, locked by this process; None when an endpoint process holds it."""
    import fcntl

    fd = _open_lock(directory)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def endpoint_running(directory: str) -> bool:
    """Whether an endpoint process holds the directory's lock."""
    try:
        fd = _take(directory)
    except OSError:
        return False
    if fd is None:
        return True
    os.close(fd)  # releases the lock
    return False


def read_state(directory: str, owner: int) -> dict[str, Any]:
    """The deployment's ``endpoint.state`` (another owner's, a missing or damaged file: empty)."""
    try:
        with open(os.path.join(directory, STATE_NAME), encoding="utf-8") as source:
            state = json.load(source)
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) and state.get("owner") == owner else {}


def write_state(directory: str, state: dict[str, Any] | None) -> None:
    """Replace ``endpoint.state`` atomically (None: remove it). Only the lock's holder writes."""
    path = os.path.join(directory, STATE_NAME)
    if state is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as out:
        json.dump(state, out)
    os.replace(temporary, path)


def retry_delay(attempts: int) -> float:
    """Seconds after the ``attempts``-th start since the endpoint last served before the next start."""
    return min(MAX_RETRY, FIRST_RETRY * 2.0 ** max(0, attempts - 1))


def _python() -> str:
    """This interpreter (under uWSGI ``sys.executable`` is the uwsgi binary: take the environment's python)."""
    executable = sys.executable or ""
    if os.path.basename(executable).startswith("python"):
        return executable
    for candidate in ("python3", "python"):
        path = os.path.join(sys.prefix, "bin", candidate)
        if os.path.exists(path):
            return path
    return executable or "python3"


def _environment(deployment: Deployment) -> dict[str, str]:
    env = dict(os.environ)
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    # Not instrumented: opentelemetry-instrument's sitecustomize directory is taken off the path.
    kept = [
        part
        for part in env.get("PYTHONPATH", "").split(os.pathsep)
        if part and not part.rstrip(os.sep).endswith(_AUTO_INSTRUMENTATION)
    ]
    env["PYTHONPATH"] = os.pathsep.join([package_root, *[p for p in kept if p != package_root]])
    env[ENDPOINT_MARK] = "1"
    return env


def _reap() -> None:
    """Wait for the endpoint processes this process started that have exited (no zombie stays)."""
    for child in list(_children):
        if child.poll() is not None:
            _children.remove(child)


def ensure_endpoint(deployment: Deployment) -> None:
    """Start the endpoint process for ``deployment`` unless one serves it, is starting, or a back-off runs."""
    _reap()
    with _lock:
        fd = _take(deployment.directory)
        if fd is None:
            return
        try:
            _start(deployment, fd)
        finally:
            os.close(fd)  # the child's copy keeps the lock; without a child, it is free again


def _start(deployment: Deployment, fd: int) -> None:
    state = read_state(deployment.directory, deployment.owner)
    if time.time() < float(state.get("retry_at", 0.0)):
        return  # the last start did not serve: wait for the back-off
    attempts = int(state.get("attempts", 0)) + 1
    # Kept: which endpoint process served last (it is dead now: it left the lock), for its successor to say so.
    state.update(owner=deployment.owner, attempts=attempts, retry_at=time.time() + retry_delay(attempts))
    write_state(deployment.directory, state)
    command = [_python(), "-m", "otel_ml.distro.multiprocess", "--dir", deployment.directory]
    command += ["--owner", str(deployment.owner), "--lock-fd", str(fd)]
    if deployment.automatic:
        command.append("--remove-dir")
    kwargs: dict[str, Any] = {"start_new_session": True, "close_fds": True, "pass_fds": (fd,)}
    _children.append(subprocess.Popen(command, env=_environment(deployment), stdin=subprocess.DEVNULL, **kwargs))
    _LOG.debug("otel_ml: started the multiprocess endpoint for %s (start %d)", deployment.directory, attempts)


def _ending(owner: int) -> bool:
    """Whether the deployment's owner, once seen alive by this process, is gone (the server is stopping).

    A master that daemonized after otel_ml started (gunicorn ``--daemon``) is
    never seen alive under the recorded pid: its workers keep the endpoint.
    """
    try:
        os.kill(owner, 0)
    except ProcessLookupError:
        return owner in _owner_seen
    except OSError:
        pass  # another user's process: alive
    _owner_seen.add(owner)
    return False


def keep_endpoint(deployment: Deployment) -> None:
    """From the publication loop: restart a dead endpoint process; looks at most once per :data:`CHECK_EVERY`.

    Never raises (the publication goes on); costs a lock attempt on a file
    while the endpoint process lives.
    """
    now = time.monotonic()
    if now - _looked[0] < CHECK_EVERY:
        return
    _looked[0] = now
    try:
        _reap()
        if _ending(deployment.owner):
            return  # the endpoint process leaves with the master: not to be started again
        ensure_endpoint(deployment)
    except Exception as exc:  # noqa: BLE001 - the program goes on; the next look tries again
        from otel_ml._core.guard import report

        report("multiprocess.endpoint", exc)


def _after_fork_in_child() -> None:
    _lock.release()
    for child in _children:
        child.returncode = 0  # the parent's child: the parent waits for it, not this process
    _children.clear()
    _looked[0] = 0.0


os.register_at_fork(before=_lock.acquire, after_in_parent=_lock.release, after_in_child=_after_fork_in_child)
