"""Wrappers of ``Model.fit``, ``evaluate`` and ``predict``, and the data-adapter tap, for every Keras flavour.

Keras 3 and Keras 2 (``tf_keras``) take the same ``fit`` arguments and the
same ``callbacks=`` forms; the :class:`~otel_ml._training.flavour.Flavour`
says where each one's ``Callback`` and ``CallbackList`` live.

The user's call runs exactly once, outside any ``try`` of ours that could
swallow it: its result and its exceptions reach the caller unchanged. Our own
set-up and tear-down are guarded separately.
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Tracer

from otel_ml._core import reported_logdirs
from otel_ml._core import semconv as sc
from otel_ml._core._importlib_bootstrap_passthrough import passthrough
from otel_ml._core.cardinality import stable_model_name, training_labels
from otel_ml._core.guard import guarded, report
from otel_ml._core.run_name import current_run_name
from otel_ml._training.fit import FitRun, end_span, start_span
from otel_ml._training.flavour import Flavour
from otel_ml._training.instruments import TrainingInstruments
from otel_ml._training.options import TrainingOptions

# Index of ``callbacks`` among fit's positional arguments (after ``self``):
# fit(x, y, batch_size, epochs, verbose, callbacks, ...).
_CALLBACKS_POS = 5
_BATCH_HOOKS = "_should_call_train_batch_hooks"  # Keras 2's CallbackList

# The innermost fit of this thread, for all flavours. A fit inside a fit (a probe, a student or a
# teacher trained in another fit's callback, even a Keras 2 fit in a Keras 3 callback) is reported on
# its own, its span a child of the outer fit's; the outer one is current again once it returns.
_local = threading.local()
_callback_classes: dict[str, type] = {}


def _current_fit() -> FitRun | None:
    return getattr(_local, "fit", None)


def _fit_callback_class(flavour: Flavour) -> type:
    """``FitRun`` mixed into the flavour's ``Callback``, built on first use (Keras is imported by then)."""
    cls = _callback_classes.get(flavour.callback)
    if cls is None:
        bases = (FitRun, flavour.load(flavour.callback))
        cls = _callback_classes[flavour.callback] = type("OtelMLCallback", bases, {})
    return cls


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], pos: int, name: str) -> Any:
    return args[pos] if len(args) > pos else kwargs.get(name)


class TrainingWrappers:
    """The wrapt wrappers, bound to one instrumentation's instruments, tracer, options and flavour.

    Each is a :func:`passthrough`: the frame it adds is invisible to
    ``warnings``, so Keras's own warnings keep pointing where Keras meant.
    """

    def __init__(
        self, instruments: TrainingInstruments, tracer: Tracer, options: TrainingOptions, flavour: Flavour
    ) -> None:
        self._m = instruments
        self._tracer = tracer
        self._opts = options
        self._flavour = flavour
        self.fit = passthrough(self._fit_enter, self._fit_leave)
        self.evaluate = passthrough(self._evaluate_enter, self._simple_leave)
        self.predict = passthrough(self._predict_enter, self._simple_leave)
        self.get_data_adapter = passthrough(self._adapter_enter, self._adapter_leave)

    # --- fit ---------------------------------------------------------------------------

    def _fit_enter(self, model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        outer = _current_fit()
        if outer is not None and outer.model_is(model):
            return None, args, kwargs  # Keras re-entering fit for the same model: the outer one reports
        run = self._start_fit(model, args, kwargs)
        if run is None:
            return None, args, kwargs
        # This fit is reported here: while it runs, the writers its TensorBoard callback creates are claimed, so
        # their values stay in ml.tensorboard.* (one fact, one series). Released when the fit ends.
        claims = self._claim(_arg(args, kwargs, _CALLBACKS_POS, "callbacks")) or []
        call_args, call_kwargs, cleanup = self._inject(run, model, args, kwargs)
        token = self._enter(run)
        return (run, token, cleanup, outer, claims), call_args, call_kwargs

    def _fit_leave(self, state: Any, error: BaseException | None, result: Any) -> None:
        run, token, cleanup, outer, claims = state
        self._release(claims)
        self._exit(run, token, cleanup, error, outer)

    @staticmethod
    @guarded("keras.fit claim tensorboard logdir")
    def _claim(callbacks: Any) -> list[str]:
        return reported_logdirs.claim_keras_tensorboard(callbacks)

    @staticmethod
    @guarded("keras.fit release tensorboard logdir")
    def _release(claims: list[str]) -> None:
        reported_logdirs.release(claims)

    @guarded("keras.fit start")
    def _start_fit(self, model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> FitRun | None:
        model_name = str(model.name)
        named = current_run_name()
        run_name = named or self._opts.run_name or model_name
        attributes: dict[str, Any] = {
            sc.ML_FRAMEWORK: self._flavour.framework,
            sc.ML_MODEL_NAME: model_name,
            sc.ML_RUN_NAME: run_name,
        }
        # The series' label values: bounded per process; a trial named with otel_ml.run() keeps the
        # model's class name, so that a sweep's trials differ by ml.run.name only.
        bound = training_labels()
        labels = bound.admit(stable_model_name(model, model_name) if named else model_name, run_name)
        # ml.epochs (the epochs that ran) and ml.batch.size (from the data, which Keras may size otherwise
        # than batch_size=, a PyDataset's own batches) are set once known, by the fit's callback.
        strategy = getattr(model, "distribute_strategy", None)
        replicas = getattr(strategy, "num_replicas_in_sync", None)
        if isinstance(replicas, int):
            attributes[sc.ML_REPLICA_COUNT] = replicas
        try:
            span = start_span(self._tracer, sc.SPAN_KERAS_FIT, attributes=attributes)
            callback = _fit_callback_class(self._flavour)
            run = callback(model, self._m, self._tracer, self._opts, run_name, span, self._flavour, labels)
        except BaseException:
            bound.finished(labels)  # no fit runs under the pair: it may be released
            raise
        run.label_bound = (bound, labels)  # told when the fit ends (.finish)
        return run  # type: ignore[no-any-return]

    def _inject(
        self, run: FitRun, model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any], Any]:
        """Add the callback once, whatever form ``callbacks=`` takes, without mutating the user's list."""
        try:
            callback_list = self._flavour.load(self._flavour.callback_list)
            given = _arg(args, kwargs, _CALLBACKS_POS, "callbacks")
            cleanup = None
            if isinstance(given, callback_list):
                run.set_model(model)  # type: ignore[attr-defined]
                given.callbacks.append(run)
                # Keras 2 decides at construction whether any callback has batch hooks.
                cleanup = (given, getattr(given, _BATCH_HOOKS, None))
                if cleanup[1] is False:
                    setattr(given, _BATCH_HOOKS, True)
                new: Any = given
            elif given is None:
                new = [run]
            elif isinstance(given, (list, tuple)):
                new = [*given, run]
            else:
                new = [given, run]  # one Callback object, which Keras accepts too
            if len(args) > _CALLBACKS_POS:
                args = (*args[:_CALLBACKS_POS], new, *args[_CALLBACKS_POS + 1 :])
            else:
                kwargs = {**kwargs, "callbacks": new}
            return args, kwargs, cleanup
        except Exception as exc:  # noqa: BLE001 - never break fit over the callback
            report("keras.fit inject callback", exc)
            return args, kwargs, None

    @guarded("keras.fit enter")
    def _enter(self, run: FitRun) -> object:
        _local.fit = run
        return otel_context.attach(run.spans.fit_ctx)

    @guarded("keras.fit exit")
    def _exit(self, run: FitRun, token: object, cleanup: Any, error: BaseException | None, outer: Any) -> None:
        _local.fit = outer
        if cleanup is not None:
            given, batch_hooks = cleanup
            if run in given.callbacks:
                given.callbacks.remove(run)
            if batch_hooks is False:
                setattr(given, _BATCH_HOOKS, False)
        if token is not None:
            otel_context.detach(token)  # type: ignore[arg-type]
        try:
            run.finish(error)
        finally:
            bound, labels = run.label_bound
            bound.finished(labels)  # its series are complete: the pair may be released past the limit

    # --- evaluate / predict -------------------------------------------------------------

    def _evaluate_enter(self, model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if _current_fit() is not None:
            return None, args, kwargs  # validation inside fit: already under the fit span
        return self._start_simple(sc.SPAN_KERAS_EVALUATE, model), args, kwargs

    def _predict_enter(self, model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return self._start_simple(sc.SPAN_KERAS_PREDICT, model), args, kwargs

    def _simple_leave(self, state: Any, error: BaseException | None, result: Any) -> None:
        span, token = state
        self._end_simple(span, token, error)

    @guarded("keras span start")
    def _start_simple(self, name: str, model: Any) -> tuple[Any, Any] | None:
        run_name = current_run_name() or self._opts.run_name or str(model.name)
        span = start_span(
            self._tracer,
            name,
            attributes={
                sc.ML_FRAMEWORK: self._flavour.framework,
                sc.ML_MODEL_NAME: str(model.name),
                sc.ML_RUN_NAME: run_name,
            },
        )
        return span, otel_context.attach(trace.set_span_in_context(span))

    @guarded("keras span end")
    def _end_simple(self, span: Any, token: Any, error: BaseException | None) -> None:
        if span is None:
            return
        if token is not None:
            otel_context.detach(token)
        end_span(span, error)

    # --- data adapter -------------------------------------------------------------------

    def _adapter_enter(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        run = _current_fit()
        # The first adapter made inside fit is the training data's; the
        # validation adapter comes later and must not replace it.
        return (run if run is not None and run.adapter is None else None), args, kwargs

    def _adapter_leave(self, run: Any, error: BaseException | None, adapter: Any) -> None:
        if error is None:
            run.adapter = adapter
