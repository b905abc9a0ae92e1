"""What every otel_ml instrumentor shares: an "any of" dependency check and post-import hooks.

otel_ml must never import a framework itself (importing paddle after
tensorflow crashes the interpreter), so instrumentors patch a module only when
the user's program imports it. wrapt's post-import hooks cannot be removed,
so each (instrumentor, module) pair registers one trampoline for the life of
the process, and the trampoline does nothing while uninstrumented.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Collection
from types import ModuleType
from typing import ClassVar

import wrapt
from opentelemetry.instrumentation.dependencies import DependencyConflict, get_dependency_conflicts
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from otel_ml._guard import guarded

_registered: set[tuple[type, str]] = set()
_registered_lock = threading.Lock()


class OtelMLInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Base of the otel_ml instrumentors.

    Subclasses set ``_instruments_any`` (from their ``package.py``) and
    ``options`` (the keyword options of ``otel_ml.instrument()`` they accept).
    """

    _instruments_any: ClassVar[Collection[str]] = ()
    options: ClassVar[frozenset[str]] = frozenset()
    _active: bool = False

    def instrumentation_dependencies(self) -> Collection[str]:
        return self._instruments_any

    def _check_dependency_conflicts(self) -> DependencyConflict | None:
        # The default check requires *all* listed packages; ours need any one
        # of several distributions (tensorflow or tensorflow-cpu, ...).
        if not self._instruments_any:
            return None
        return get_dependency_conflicts([], self._instruments_any)

    def _when_imported(self, module_name: str) -> None:
        """Call ``self._patch_module(module_name, module)`` now if it is imported, else on import."""
        module = sys.modules.get(module_name)
        if module is not None:
            guarded(f"{type(self).__name__} patching {module_name}")(self._patch_module)(module_name, module)
            return
        key = (type(self), module_name)
        with _registered_lock:
            if key in _registered:
                return
            _registered.add(key)
        wrapt.register_post_import_hook(_Trampoline(type(self), module_name), module_name)

    def _patch_module(self, module_name: str, module: ModuleType) -> None:
        """Patch ``module``, which the program just imported (or had imported)."""
        raise NotImplementedError


class _Trampoline:
    """A post-import hook that patches only while its instrumentor is active."""

    def __init__(self, instrumentor_type: type[OtelMLInstrumentor], module_name: str) -> None:
        self._type = instrumentor_type
        self._name = module_name

    def __call__(self, module: ModuleType) -> None:
        instance = self._type()  # BaseInstrumentor is a per-class singleton
        if instance._active:
            guarded(f"{self._type.__name__} patching {self._name}")(instance._patch_module)(self._name, module)
