"""What every otel_ml instrumentor shares: options, post-import hooks, one patch/restore helper, exit.

otel_ml must never import a framework itself (importing paddle after
tensorflow crashes the interpreter), so instrumentors patch a module only when
the user's program imports it. wrapt's post-import hooks cannot be removed,
so each (instrumentor, module) pair registers one trampoline for the life of
the process, and the trampoline does nothing while uninstrumented.

A subclass declares its options table, the modules it patches and
:meth:`OtelMLInstrumentor._setup` / :meth:`OtelMLInstrumentor._patch_module` /
:meth:`OtelMLInstrumentor._teardown`; the base class resolves the options,
keeps the record of every patch and restores each original exactly.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
from collections.abc import Callable, Collection
from types import ModuleType
from typing import Any, ClassVar

import wrapt
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.dependencies import DependencyConflict, get_dependency_conflicts
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from otel_ml._core.guard import guarded
from otel_ml._core.options import OptionTable
from otel_ml.version import __version__

_LOG = logging.getLogger(__name__)
_registered: set[tuple[type, str]] = set()
_registered_lock = threading.Lock()


class OtelMLInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Base of the otel_ml instrumentors.

    Subclasses set ``_instruments_any`` (from their ``package.py``),
    ``option_table`` (from their ``_options.py``) and ``_modules`` (what to
    patch when imported), and implement ``_setup``, ``_patch_module`` and
    ``_teardown``.
    """

    _instruments_any: ClassVar[Collection[str]] = ()
    option_table: ClassVar[OptionTable] = OptionTable()
    _modules: ClassVar[tuple[str, ...]] = ()
    _imports: ClassVar[tuple[str, ...]] = ()  # the framework's import names, for the "unsupported" line
    _active: bool = False
    _patches: list[tuple[Any, str, Any, Any]]  # (owner, name, original, replacement)
    _replacements: dict[int, tuple[Any, Any]]  # id(original) -> (original, replacement)

    @property
    def options(self) -> frozenset[str]:
        """The keyword options of ``otel_ml.instrument()`` this instrumentor accepts."""
        return self.option_table.names

    def instrumentation_dependencies(self) -> Collection[str]:
        return self._instruments_any

    def _check_dependency_conflicts(self) -> DependencyConflict | None:
        # The default check requires *all* listed packages; ours need any one
        # of several distributions (tensorflow or tensorflow-cpu, ...).
        if not self._instruments_any:
            return None
        return get_dependency_conflicts([], self._instruments_any)

    # --- the life cycle ------------------------------------------------------------------

    def note_unsupported(self, conflict: DependencyConflict | None) -> None:
        """No silent nothing: a framework installed in a version we do not support gets one INFO line.

        The line comes when the program imports the framework (now, if it
        has): installed but unused frameworks are none of the user's concern.
        """
        if conflict is None or not (conflict.found or conflict.found_any):
            return
        supported = ", ".join(self._instruments_any)
        for name in self._imports:
            key = (type(self), "unsupported " + name)
            with _registered_lock:
                if key in _registered:
                    continue
                _registered.add(key)
            wrapt.register_post_import_hook(_Unsupported(type(self).__name__, supported), name)

    def _instrument(self, **kwargs: Any) -> None:
        guarded("checking framework versions")(self.note_unsupported)(self._check_dependency_conflicts())
        options = self.option_table.resolve(kwargs)
        name = type(self).__module__
        meter = metrics.get_meter(name, __version__, kwargs.get("meter_provider"))
        tracer = trace.get_tracer(name, __version__, kwargs.get("tracer_provider"))
        if not hasattr(self, "_patches"):
            self._patches, self._replacements = [], {}
        if self._setup(options, meter, tracer, kwargs) is False:
            return
        self._active = True
        _register_exit(type(self))
        for module_name in self._modules:
            self._when_imported(module_name)

    def _uninstrument(self, **kwargs: Any) -> None:
        self._active = False
        _unregister_exit(type(self))
        self._restore_all()
        self._teardown()

    def _setup(
        self, options: dict[str, Any], meter: metrics.Meter, tracer: trace.Tracer, kwargs: dict[str, Any]
    ) -> Any:
        """Build this instrumentation's state; return False to stay off (e.g. no GPU)."""
        raise NotImplementedError

    def _patch_module(self, module_name: str, module: ModuleType) -> None:
        """Patch ``module``, which the program just imported (or had imported)."""

    def _teardown(self) -> None:
        """Drop this instrumentation's state after the originals are back."""

    def _at_exit(self) -> None:
        """Hand over what is still pending before the providers shut down (runs while active)."""

    # --- patching ------------------------------------------------------------------------

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

    def _patch(self, owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        """Replace ``owner.name`` (defined on ``owner`` itself) by ``make(original)``, once.

        The one patch helper of every instrumentor. An original already
        replaced elsewhere (a function bound under several module names) gets
        the very same replacement, so identity checks in the framework still
        hold; a name that already holds our replacement is only recorded, so
        that :meth:`_restore_all` puts the original back there too.
        """
        current = owner.__dict__.get(name)
        if current is None:
            return
        for original, replacement in self._replacements.values():
            if current is replacement:
                if not any(o is owner and n == name for o, n, _, _ in self._patches):
                    self._patches.append((owner, name, original, replacement))
                return
        known = self._replacements.get(id(current))
        replacement = known[1] if known is not None else make(current)
        self._replacements[id(current)] = (current, replacement)
        setattr(owner, name, replacement)
        self._patches.append((owner, name, current, replacement))

    def _wrap(self, owner: Any, name: str, wrapper: Callable[..., Any]) -> None:
        """:meth:`_patch` with a wrapt wrapper ``wrapper(wrapped, instance, args, kwargs)``."""
        self._patch(owner, name, lambda original: wrapt.FunctionWrapper(original, wrapper))

    def _restore_all(self) -> None:
        """Put every original back where our replacement still stands, newest patch first."""
        for owner, name, original, replacement in reversed(getattr(self, "_patches", ())):
            if owner.__dict__.get(name) is replacement:
                setattr(owner, name, original)
            else:
                _LOG.debug("otel_ml: %s.%s was replaced by someone else; left as it is", owner, name)
        if hasattr(self, "_patches"):
            self._patches.clear()
            self._replacements.clear()


class _Trampoline:
    """A post-import hook that patches only while its instrumentor is active."""

    def __init__(self, instrumentor_type: type[OtelMLInstrumentor], module_name: str) -> None:
        self._type = instrumentor_type
        self._name = module_name

    def __call__(self, module: ModuleType) -> None:
        instance = self._type()  # BaseInstrumentor is a per-class singleton
        if instance._active:
            guarded(f"{self._type.__name__} patching {self._name}")(instance._patch_module)(self._name, module)


class _Unsupported:
    """A post-import hook that says, once, that this version of a framework is not instrumented."""

    def __init__(self, instrumentor: str, supported: str) -> None:
        self._instrumentor = instrumentor
        self._supported = supported

    def __call__(self, module: ModuleType) -> None:
        _LOG.info(
            "otel_ml: %s %s is imported but not instrumented: %s supports %s "
            "(see 'Supported versions' in otel_ml's README)",
            module.__name__,
            getattr(module, "__version__", "(unknown version)"),
            self._instrumentor,
            self._supported,
        )


_exit_hooks: dict[type, Callable[[], None]] = {}


def _exit_hook(cls: type[OtelMLInstrumentor]) -> Callable[[], None]:
    """The one interpreter-exit hook of an instrumentor class: ``_at_exit`` while active, guarded."""
    hook = _exit_hooks.get(cls)
    if hook is None:

        def hook() -> None:
            instance = cls()
            if instance._active:
                guarded(f"{cls.__name__} at exit")(instance._at_exit)()

        _exit_hooks[cls] = hook
    return hook


def _register_exit(cls: type[OtelMLInstrumentor]) -> None:
    """(Re-)register the class's exit hook as the newest one.

    Exit hooks run newest first, and the SDK's providers register theirs when
    they are built, before instrumenting: ours then runs before they shut
    down, and what is pending still reaches them.
    """
    hook = _exit_hook(cls)
    atexit.unregister(hook)
    atexit.register(hook)


def _unregister_exit(cls: type[OtelMLInstrumentor]) -> None:
    atexit.unregister(_exit_hook(cls))
