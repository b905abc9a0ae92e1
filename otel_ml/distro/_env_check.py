"""One WARNING for a misspelt ``OTEL_ML_*`` variable, naming the closest one otel_ml reads.

A misspelt variable (``OTEL_ML_SLOW_STEP_SECOND``) is otherwise silently
ignored: the job runs with the default and nobody notices. Checked once per
process, when otel_ml sets up (``instrument()`` or the configurator), never at
import. The names are compared after the prefix (which every name shares); a
name close to none of otel_ml's is someone else's (a CI script's own
``OTEL_ML_REQUIRE_COLLECTOR``): one DEBUG line, not a warning on every run.
"""

from __future__ import annotations

import difflib
import logging
import os
import threading

from otel_ml import environment_variables

_LOG = logging.getLogger(__name__)
_PREFIX = "OTEL_ML_"
_CUTOFF = 0.6  # difflib's ratio on the part after the prefix: RUNNAME 0.93, MODEL 0.67, PORT 0.30
_checked = False
_lock = threading.Lock()


def known() -> frozenset[str]:
    """Every ``OTEL_ML_*`` variable otel_ml reads (each declared once in :mod:`otel_ml.environment_variables`)."""
    return frozenset(name for name in vars(environment_variables) if name.startswith(_PREFIX))


def check_unknown_variables(environ: dict[str, str] | os._Environ[str] | None = None) -> None:
    """Warn once per unknown ``OTEL_ML_*`` variable in the environment (once per process)."""
    global _checked
    with _lock:
        if _checked and environ is None:
            return
        _checked = True
    env = os.environ if environ is None else environ
    valid = known()
    suffixes = sorted(name[len(_PREFIX) :] for name in valid)
    for name in sorted(key for key in env if key.startswith(_PREFIX) and key not in valid):
        shown = name if len(name) <= 100 else name[:100] + "..."
        close = difflib.get_close_matches(name[len(_PREFIX) : 100], suffixes, n=1, cutoff=_CUTOFF)
        if close:
            _LOG.warning(
                "otel_ml: %s is set but is not a variable otel_ml reads; did you mean %s%s?", shown, _PREFIX, close[0]
            )
        else:
            _LOG.debug("otel_ml: %s is not a variable otel_ml reads (nor close to one); ignored", shown)


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
