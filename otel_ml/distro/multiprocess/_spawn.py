"""Start the deployment's endpoint process once: the first process to publish starts it, the others see it.

The endpoint process holds an exclusive lock on ``<directory>/endpoint.lock``
for its whole life, so "is one running?" is a non-blocking lock attempt, and
two workers that start one at the same moment leave one running (the
second cannot take the lock and exits at once). It runs the same Python and
the same otel_ml as the worker, never instrumented itself, in its own
session (a Ctrl-C to the server does not reach it): it stops by itself once
the deployment's owner (the master) is gone.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from typing import Any

from otel_ml.distro.multiprocess._mode import ENDPOINT_MARK, Deployment

_LOG = logging.getLogger(__name__)

LOCK_NAME = "endpoint.lock"
_AUTO_INSTRUMENTATION = os.path.join("opentelemetry", "instrumentation", "auto_instrumentation")
_children: list[subprocess.Popen[bytes]] = []


def endpoint_running(directory: str) -> bool:
    """Whether an endpoint process holds the directory's lock."""
    import fcntl

    try:
        fd = os.open(os.path.join(directory, LOCK_NAME), os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # also releases the lock if it was taken
    return False


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


def ensure_endpoint(deployment: Deployment) -> None:
    """Start the endpoint process for ``deployment`` unless one is serving it already."""
    for child in list(_children):  # reap one that exited (it lost the lock to another)
        if child.poll() is not None:
            _children.remove(child)
    if endpoint_running(deployment.directory):
        return
    command = [
        _python(),
        "-m",
        "otel_ml.distro.multiprocess",
        "--dir",
        deployment.directory,
        "--owner",
        str(deployment.owner),
    ]
    if deployment.automatic:
        command.append("--remove-dir")
    kwargs: dict[str, Any] = {"start_new_session": True, "close_fds": True, "stdin": subprocess.DEVNULL}
    _children.append(subprocess.Popen(command, env=_environment(deployment), **kwargs))
    _LOG.debug("otel_ml: started the multiprocess endpoint for %s", deployment.directory)
