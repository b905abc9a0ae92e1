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

import wrapt

from otel_ml._core import _importlib_bootstrap_passthrough as module
from otel_ml._core._importlib_bootstrap_passthrough import passthrough


def _wrapped(function):  # type: ignore[no-untyped-def]
    return wrapt.FunctionWrapper(function, passthrough(lambda i, a, k: ("state", a, k), lambda s, e, r: None))


def test_the_module_name_is_the_one_the_heuristic_looks_for() -> None:
    assert "importlib" in module.__file__ and "_bootstrap" in module.__file__


def test_a_warning_through_our_wrapper_points_at_the_callers_line() -> None:
    def framework_function() -> None:
        warnings.warn("from the framework", UserWarning, stacklevel=2)

    wrapped = _wrapped(framework_function)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wrapped()
        line = inspect.currentframe().f_lineno - 1  # type: ignore[union-attr]
    (warning,) = caught
    assert (warning.filename, warning.lineno) == (__file__, line)


def test_a_deeper_stacklevel_counts_past_our_frame_too() -> None:
    def framework_function() -> None:
        warnings.warn("from the framework's helper", UserWarning, stacklevel=3)

    wrapped = _wrapped(framework_function)

    def framework_entry_point() -> None:
        wrapped()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        framework_entry_point()
        line = inspect.currentframe().f_lineno - 1  # type: ignore[union-attr]
    (warning,) = caught
    assert (warning.filename, warning.lineno) == (__file__, line)
