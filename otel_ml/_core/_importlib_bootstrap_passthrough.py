"""The one Python frame otel_ml puts between a user's call and the framework's function.

``warnings.warn(..., stacklevel=n)`` counts frames up from the framework
code, and one extra frame of ours would make a Keras warning point at otel_ml
instead of at the line it was meant for (the user's ``fit`` call, or Keras's
own caller). CPython's warning machinery skips frames whose file name holds
both ``importlib`` and ``_bootstrap`` (so that warnings raised during an
import point past the import system). This module's name holds both on
purpose: the wrapper frame defined here is skipped in the same way, and the
warning keeps its original target. Tracebacks still show the frame.

The heuristic is undocumented, so ``tests/test_warning_frames.py`` checks it
with no framework installed, on every Python the suite runs on. Every
wrapper of a Python-level framework function on a user's call path is a
:func:`passthrough` (Keras's ``fit``/``evaluate``/``predict`` and data
adapter, tf.summary's ``write``, ``create_file_writer`` and ``close``).
Paddle's wrapped functions are compiled: a warning raised from C names the
innermost Python frame whatever its file is called, so no name could hide a
frame there, and the Paddle wrappers are plain functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Enter = Callable[[Any, tuple[Any, ...], dict[str, Any]], "tuple[Any, tuple[Any, ...], dict[str, Any]]"]
Leave = Callable[[Any, "BaseException | None", Any], None]


def passthrough(enter: Enter, leave: Leave) -> Callable[..., Any]:
    """A wrapt wrapper that calls ``wrapped`` exactly once, between two guarded hooks of ours.

    ``enter(instance, args, kwargs)`` returns ``(state, args, kwargs)`` for the
    call; a ``None`` state means "not ours": the call is made and nothing
    else. ``leave(state, error, result)`` runs after the call, whether it
    returned or raised; the user's exception is re-raised unchanged.

    Example:
        >>> import wrapt
        >>> wrapper = passthrough(lambda i, a, k: ("s", a, k), lambda s, e, r: print(s, e, r))
        >>> wrapt.FunctionWrapper(lambda x: x * 2, wrapper)(21)
        s None 42
        42
    """

    def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        state, args, kwargs = enter(instance, args, kwargs)
        if state is None:
            return wrapped(*args, **kwargs)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            leave(state, exc, None)
            raise
        leave(state, None, result)
        return result

    return wrapper
