"""Observable instruments that follow the current instrumentation.

The SDK cannot unregister an observable instrument, and creating one twice on
the same meter returns the first, with its first callbacks. So an instrumentor
creates its observable instruments once per meter provider, with callbacks
that read a :class:`Binding`: it points at the current instrumentation's
state, or at nothing while uninstrumented (the callbacks then yield nothing).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from opentelemetry.metrics import CallbackOptions, Observation

S = TypeVar("S")
Callback = Callable[[CallbackOptions], Iterable[Observation]]

_bindings: weakref.WeakKeyDictionary[Any, dict[str, Binding[Any]]] = weakref.WeakKeyDictionary()


class Binding(Generic[S]):
    """The state that a provider's observable callbacks read now.

    Example:
        >>> binding: Binding[list[int]] = Binding()
        >>> callback = binding.callback(lambda state, options: [Observation(len(state))])
        >>> list(callback(CallbackOptions()))
        []
        >>> binding.bind([1, 2, 3])
        >>> [o.value for o in callback(CallbackOptions())]
        [3]
    """

    def __init__(self) -> None:
        self.state: S | None = None

    def bind(self, state: S) -> None:
        """Observe ``state`` from now on."""
        self.state = state

    def unbind(self) -> None:
        """Observe nothing from now on."""
        self.state = None

    def callback(self, read: Callable[[S, CallbackOptions], Iterable[Observation]]) -> Callback:
        """An observable callback that calls ``read(state, options)`` while bound."""

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            state = self.state
            return () if state is None else read(state, options)

        return observe


def binding_for(meter_provider: Any, key: str, create: Callable[[Binding[Any]], None]) -> Binding[Any]:
    """The binding ``key`` of ``meter_provider``; ``create(binding)`` makes its instruments the first time."""
    per_provider = _bindings.get(meter_provider)
    if per_provider is None:
        per_provider = _bindings[meter_provider] = {}
    binding = per_provider.get(key)
    if binding is None:
        binding = per_provider[key] = Binding()
        create(binding)
    return binding
