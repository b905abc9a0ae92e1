"""Whether this process is one of a pre-fork server's workers, and where the workers publish.

Multiprocess mode is on when ``OTEL_ML_MULTIPROCESS=on``, or (``auto``, the
default) when ``OTEL_ML_MULTIPROCESS_DIR`` is set or the program is a
gunicorn or uWSGI server. Every process of one deployment must agree on the
directory without talking to each other, so the default directory is named
after the deployment's *owner*: the server's master process. The master
finds itself (it runs otel_ml before forking: ``--preload``,
``opentelemetry-instrument gunicorn``); a worker that loads the app itself
finds its master through gunicorn's worker object (``Worker.ppid``) or
uWSGI's ``uwsgi.masterpid()``; a forked child inherits its parent's answer.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

from otel_ml import environment_variables as ev
from otel_ml._core.options import Option, parse_choice, parse_float, parse_str

_LOG = logging.getLogger(__name__)

MULTIPROCESS = Option("multiprocess", ev.OTEL_ML_MULTIPROCESS, parse_choice("auto", "on", "off"), "auto")
DIRECTORY = Option("multiprocess_dir", ev.OTEL_ML_MULTIPROCESS_DIR, parse_str, None)
INTERVAL = Option("multiprocess_interval", ev.OTEL_ML_MULTIPROCESS_INTERVAL, parse_float(0.05, maximum=3600.0), 1.0)

_SERVERS = ("gunicorn", "uwsgi")


@dataclass(frozen=True)
class Deployment:
    """Where a deployment's processes publish, and the process whose life is the deployment's."""

    directory: str
    owner: int
    automatic: bool  # the directory is otel_ml's own (removed when the deployment ends)
    interval: float


def server_name() -> str | None:
    """``gunicorn`` or ``uwsgi`` when this process is (or was forked from) one of those servers."""
    if "uwsgi" in sys.modules:
        return "uwsgi"
    if any(name == "gunicorn" or name.startswith("gunicorn.") for name in list(sys.modules)):
        return "gunicorn"
    argv0 = (sys.argv[0] if sys.argv else "") or ""
    parts = argv0.replace("\\", "/").split("/")
    # `gunicorn app:app`, or `python -m gunicorn` (argv[0] is .../gunicorn/__main__.py)
    if parts[-1] in _SERVERS or (len(parts) > 1 and parts[-2] in _SERVERS and parts[-1] == "__main__.py"):
        return parts[-1] if parts[-1] in _SERVERS else parts[-2]
    return None


def _master_pid() -> int:
    """The server's master: found from a gunicorn worker or uWSGI, else this process."""
    uwsgi: Any = sys.modules.get("uwsgi")
    if uwsgi is not None:
        try:
            master = int(uwsgi.masterpid())
            if master > 0:
                return master
        except Exception:  # noqa: BLE001 - uWSGI without a master (masterpid() is 0), or an old uWSGI
            pass
    base: Any = sys.modules.get("gunicorn.workers.base")
    if base is not None:
        # Without --preload the app (and so otel_ml) is loaded by Worker.load_wsgi(): the worker is on the stack.
        frame: Any = sys._getframe()
        while frame is not None:
            candidate = frame.f_locals.get("self")
            if isinstance(candidate, base.Worker):
                return int(candidate.ppid)
            frame = frame.f_back
    return os.getpid()


_current: list[Deployment | None] = []  # a forked child inherits it: decided once, with the master as owner
# Set by otel_ml in the endpoint process's environment, never by a user: outside the OTEL_ML_ names (no "unknown
# variable" warning, not a setting to document).
ENDPOINT_MARK = "_OTEL_ML_MULTIPROCESS_ENDPOINT_PROCESS"


def deployment() -> Deployment | None:
    """This process's deployment, or None when multiprocess mode is off. Decided once per process tree."""
    if _current:
        return _current[0]
    found = _decide()
    _current.append(found)
    return found


def _decide() -> Deployment | None:
    mode = MULTIPROCESS.resolve(None)
    directory = DIRECTORY.resolve(None)
    if os.environ.get(ENDPOINT_MARK):
        return None  # the endpoint process itself
    if mode == "off" or (mode == "auto" and directory is None and server_name() is None):
        return None
    owner = _master_pid()
    interval = INTERVAL.resolve(None)
    automatic = directory is None
    if directory is None:
        uid = os.getuid() if hasattr(os, "getuid") else 0
        directory = os.path.join(tempfile.gettempdir(), f"otel_ml-multiprocess-{uid}-{owner}")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as exc:
        _LOG.error(
            "otel_ml: cannot create the multiprocess directory %s (%s); each process serves its own "
            "telemetry instead (set OTEL_ML_MULTIPROCESS_DIR to a writable directory)",
            directory,
            os.strerror(exc.errno) if exc.errno else exc,
        )
        return None
    refused = _not_private(directory) if automatic else None
    if refused:
        _LOG.error(
            "otel_ml: the multiprocess directory %s is %s, so another user could read or plant telemetry there; "
            "each process serves its own telemetry instead (set OTEL_ML_MULTIPROCESS_DIR to a directory of yours)",
            directory,
            refused,
        )
        return None
    return Deployment(os.path.abspath(directory), owner, automatic, interval)


def _not_private(directory: str) -> str | None:
    """Why the shared temporary ``directory`` (a predictable name) cannot be trusted, or None.

    Its name is guessable: another local user may have made it first, or left
    a link under it. ``makedirs``' mode applies only to a new directory, so
    what is there is checked: a real directory of this user, closed to others.
    """
    try:
        info = os.lstat(directory)
    except OSError as exc:
        return f"unreadable ({os.strerror(exc.errno) if exc.errno else exc})"
    if not stat.S_ISDIR(info.st_mode):
        return "not a directory (a link or a file)"
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        return f"owned by uid {info.st_uid}, not this user"
    if info.st_mode & 0o077:
        return f"open to other users (mode {stat.S_IMODE(info.st_mode):o})"
    return None
