"""What every otel_ml instrumentor shares: options, post-import hooks, one patch/restore helper, exit.

otel_ml must never import a framework itself (importing paddle after
tensorflow crashes the interpreter), so instrumentors patch a module only when
the user's program imports it. wrapt's post-import hooks cannot be removed,
so each (instrumentor, module) pair registers one trampoline for the life of
the process, and the trampoline does nothing while uninstrumented.

A subclass declares its options table, the modules it patches and
:meth:`OtelMLInstrumentor._setup` / :meth:`OtelMLInstrumentor._patch_module` /
:meth:`OtelMLInstrumentor._teardown`; the base class resolves the options,
keeps the record of every patch (:class:`Patches`, which
``otel_ml.serving.instrument_flask_app`` uses too) and restores each original
exactly.

Which framework versions apply is said the public way, as the contrib
instrumentations do: :meth:`OtelMLInstrumentor.instrumentation_dependencies`
returns the requirement of the one distribution installed among the
alternatives (``tensorflow`` or ``tensorflow-cpu``, as the psycopg2
instrumentation does for ``psycopg2`` or ``psycopg2-binary``), so that
``get_dependency_conflicts`` of every supported ``opentelemetry-instrumentation``
release checks it.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from collections.abc import Callable, Collection
from importlib.metadata import PackageNotFoundError, distribution
from types import ModuleType
from typing import Any, ClassVar

import wrapt
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.dependencies import DependencyConflict, get_dependency_conflicts
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from packaging.requirements import Requirement

from otel_ml._core.guard import guarded
from otel_ml._core.options import OptionTable
from otel_ml.version import __version__

_LOG = logging.getLogger(__name__)
_registered: set[tuple[type, str]] = set()
_registered_lock = threading.Lock()
_ABSENT: Any = object()


class Patches:
    """The record of what otel_ml replaced, so that each original goes back exactly.

    The one patch/restore helper: every instrumentor patches through one
    (:meth:`OtelMLInstrumentor._patch`), and so does
    ``otel_ml.serving.instrument_flask_app`` for an app's ``wsgi_app``.

    Example:
        >>> import types
        >>> module = types.SimpleNamespace(answer=lambda: 42)
        >>> original = module.answer
        >>> patches = Patches()
        >>> patches.patch(module, "answer", lambda f: (lambda: f() + 1))
        >>> module.answer()
        43
        >>> patches.restore()  # nothing left stranded in anyone else's wrapper
        []
        >>> module.answer is original
        True
    """

    def __init__(self) -> None:
        self._done: list[tuple[Any, str, Any, Any]] = []  # (owner, name, own value or _ABSENT, replacement)
        self._replacements: dict[int, tuple[Any, Any]] = {}  # id(original) -> (original, replacement)

    def patch(self, owner: Any, name: str, make: Callable[[Any], Any], *, inherited: bool = False) -> None:
        """Replace ``owner.name`` by ``make(original)``, once.

        By default only a name defined on ``owner`` itself is replaced (a
        class's own method, a module's function). With ``inherited=True`` a
        name ``owner`` only inherits is replaced too (a Flask app's
        ``wsgi_app``, a method of its class), and :meth:`restore` deletes the
        attribute again, so the inherited one shows through as before.

        An original already replaced elsewhere (a function bound under several
        module names) gets the very same replacement, so identity checks in the
        framework still hold; a name that already holds our replacement is only
        recorded, so that :meth:`restore` puts the original back there too.
        """
        own = vars(owner).get(name, _ABSENT)
        current = own if own is not _ABSENT or not inherited else getattr(owner, name, _ABSENT)
        if current is _ABSENT or current is None:
            return
        for original, replacement in self._replacements.values():
            if current is replacement:
                if not any(o is owner and n == name for o, n, _, _ in self._done):
                    self._done.append((owner, name, original, replacement))
                return
        known = self._replacements.get(id(current))
        replacement = known[1] if known is not None else make(current)
        self._replacements[id(current)] = (current, replacement)
        setattr(owner, name, replacement)
        self._done.append((owner, name, own, replacement))

    def wrap(self, owner: Any, name: str, wrapper: Callable[..., Any]) -> None:
        """:meth:`patch` with a wrapt wrapper ``wrapper(wrapped, instance, args, kwargs)``."""
        self.patch(owner, name, lambda original: wrapt.FunctionWrapper(original, wrapper))

    def restore(self) -> list[Any]:
        """Put every original back where our replacement still stands, newest patch first; then forget them.

        Returns the replacements that could not be taken out: someone wrapped
        them again since (e.g. ``app.wsgi_app = ProxyFix(app.wsgi_app)``), so
        they stay in that chain, and the caller makes them pass calls through.
        """
        stranded = []
        for owner, name, own, replacement in reversed(self._done):
            if vars(owner).get(name) is not replacement:
                _LOG.debug("otel_ml: %s.%s was replaced by someone else; left as it is", owner, name)
                stranded.append(replacement)
            elif own is _ABSENT:
                delattr(owner, name)
            else:
                setattr(owner, name, own)
        self._done.clear()
        self._replacements.clear()
        return stranded


def installed_alternative(alternatives: Collection[str]) -> Collection[str]:
    """The requirement of the first distribution installed among ``alternatives``, else all of them.

    ``get_dependency_conflicts`` (public in every supported
    ``opentelemetry-instrumentation``) requires all it is given; ours need
    one of several distributions of the same code. Given only the installed
    one, it reports its version when unsupported; given all of them when none
    is installed, it reports the first as missing.

    Example:
        >>> installed_alternative(["no-such-dist >= 1", "packaging >= 1"])
        ['packaging >= 1']
    """
    for requirement in alternatives:
        try:
            distribution(Requirement(requirement).name)
        except PackageNotFoundError:
            continue
        return [requirement]
    return list(alternatives)


class OtelMLInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Base of the otel_ml instrumentors.

    Subclasses set ``_instruments_any`` and ``_instruments_all`` (from their
    ``package.py``), ``option_table`` (their options, declared once) and
    ``_modules`` (what to patch when imported), and implement ``_setup``,
    ``_patch_module`` and ``_teardown``.
    """

    _instruments_any: ClassVar[Collection[str]] = ()  # any one of these distributions suffices
    _instruments_all: ClassVar[Collection[str]] = ()  # and all of these are needed as well
    option_table: ClassVar[OptionTable] = OptionTable()
    _modules: ClassVar[tuple[str, ...]] = ()
    _imports: ClassVar[tuple[str, ...]] = ()  # the framework's import names, for the "unsupported" line
    _active: bool = False
    _patches: Patches | None = None

    @property
    def options(self) -> frozenset[str]:
        """The keyword options of ``otel_ml.instrument()`` this instrumentor accepts."""
        return self.option_table.names

    def instrumentation_dependencies(self) -> Collection[str]:
        """The installed one of the "any of" alternatives (else all of them), then what is needed besides."""
        chosen = installed_alternative(self._instruments_any) if self._instruments_any else []
        return [*chosen, *self._instruments_all]

    def dependency_conflict(self) -> DependencyConflict | None:
        """What keeps this instrumentor from applying (a framework missing, or installed in another version)."""
        return get_dependency_conflicts(self.instrumentation_dependencies())

    # --- the life cycle ------------------------------------------------------------------

    def note_unsupported(self, conflict: DependencyConflict | None) -> None:
        """No silent nothing: a framework installed in a version we do not support gets one INFO line.

        The line comes when the program imports the framework (now, if it
        has): installed but unused frameworks are none of the user's concern,
        and a missing one (``conflict.found`` is None) is quiet.
        """
        if conflict is None or not conflict.found:
            return
        supported = str(conflict.required)  # the requirement of the installed alternative, or what it needs besides
        for name in self._imports:
            key = (type(self), "unsupported " + name)
            with _registered_lock:
                if key in _registered:
                    continue
                _registered.add(key)
            wrapt.register_post_import_hook(_Unsupported(type(self).__name__, supported), name)

    def _instrument(self, **kwargs: Any) -> None:
        if sdk_disabled() or _off_in_this_process:
            return  # OTEL_SDK_DISABLED (or a process otel_ml stays out of): no patch, no thread, no socket
        # opentelemetry-instrument skips BaseInstrumentor's check (skip_dep_check): an installed
        # version we do not support must stay unpatched here too; a missing framework is never imported.
        conflict = guarded("checking framework versions")(self.dependency_conflict)()
        if conflict is not None and conflict.found:
            self.note_unsupported(conflict)
            return
        options = self.option_table.resolve(kwargs)
        name = type(self).__module__
        meter = metrics.get_meter(name, __version__, kwargs.get("meter_provider"))
        tracer = trace.get_tracer(name, __version__, kwargs.get("tracer_provider"))
        if self._patches is None:
            self._patches = Patches()
        if self._setup(options, meter, tracer, kwargs) is False:
            return
        self._active = True
        _register_exit(type(self))
        for module_name in self._modules:
            self._when_imported(module_name)

    def _uninstrument(self, **kwargs: Any) -> None:
        self._active = False
        _unregister_exit(type(self))
        if self._patches is not None:
            self._patches.restore()
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

    def _exit_first(self) -> None:
        """Run :meth:`_at_exit` before the exit hooks registered so far (a framework's, imported just now)."""
        _register_exit(type(self))

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
        """Replace ``owner.name`` (defined on ``owner`` itself) by ``make(original)``: :meth:`Patches.patch`."""
        if self._patches is not None:
            self._patches.patch(owner, name, make)

    def _wrap(self, owner: Any, name: str, wrapper: Callable[..., Any]) -> None:
        """:meth:`_patch` with a wrapt wrapper ``wrapper(wrapped, instance, args, kwargs)``."""
        if self._patches is not None:
            self._patches.wrap(owner, name, wrapper)


_off_in_this_process = False


def stay_off_in_this_process() -> None:
    """No instrumentor instruments in this process (a ``multiprocessing`` worker whose telemetry has nowhere to go)."""
    global _off_in_this_process
    _off_in_this_process = True


def sdk_disabled() -> bool:
    """``OTEL_SDK_DISABLED=true`` (as the SDK reads it): otel_ml is off, not merely exporting nothing."""
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


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
