"""The wrapper frame otel_ml adds on a user's call path is invisible to ``warnings``.

This rests on an undocumented CPython heuristic (a frame whose file name holds
both ``importlib`` and ``_bootstrap`` is skipped when ``stacklevel`` counts
frames), so it is checked here, with no framework installed, on every Python
the suite runs on: the day the heuristic goes, this test fails and the
wrappers (Keras, tf.summary) must change.
"""

from __future__ import annotations

import inspect
import warnings

import pytest
import wrapt

from otel_ml._core import _importlib_bootstrap_passthrough as module
from otel_ml._core._importlib_bootstrap_passthrough import passthrough


def _wrapped(function):  # type: ignore[no-untyped-def]
    return wrapt.FunctionWrapper(function, passthrough(lambda i, a, k: ("state", a, k), lambda s, e, r: None))


def test_the_module_name_is_the_one_the_heuristic_looks_for() -> None:
    assert "importlib" in module.__file__ and "_bootstrap" in module.__file__


@pytest.mark.parametrize("depth", [0, 1], ids=["framework function", "framework helper"])
def test_a_warning_through_our_wrapper_points_at_the_callers_line(depth: int) -> None:
    """``stacklevel`` counts past our frame, whether the warning names the wrapped function's caller or its caller's."""

    def framework_function() -> None:
        warnings.warn("from the framework", UserWarning, stacklevel=2 + depth)

    wrapped = _wrapped(framework_function)

    def framework_entry_point() -> None:
        wrapped()

    call = wrapped if depth == 0 else framework_entry_point
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
        line = inspect.currentframe().f_lineno - 1  # type: ignore[union-attr]
    (warning,) = caught
    assert (warning.filename, warning.lineno) == (__file__, line)
