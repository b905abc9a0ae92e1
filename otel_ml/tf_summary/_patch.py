"""The opt-in per-write path (``summary_per_write``): the wrapper of ``summary_ops_v2.write``.

The default path reads the event files back (:mod:`otel_ml.tf_summary._watch`)
and costs the training step nothing; this one exports as the write is made.

``write`` replaces the summary's ``tensor`` argument with a callable that
TensorFlow calls only when it really records (a default writer exists and
``record_if`` holds), under the same device scope, and that returns the very
tensor TensorFlow would have written. So what reaches the event file is
unchanged, and we export exactly the writes TensorBoard gets.

Eagerly, the callable exports the value at once. Inside ``tf.function`` it
runs only while tracing, so it adds a ``tf.py_function`` that exports the
value each time the graph records the summary (the per-write cost is measured
in ``bench/bench_tf_summary.py``).
"""

from __future__ import annotations

from typing import Any

from otel_ml._core import semconv as sc
from otel_ml._core._importlib_bootstrap_passthrough import passthrough
from otel_ml._core.guard import guarded, report
from otel_ml._summary import CONTENT_KINDS, PLUGIN_KINDS, SummaryExporter, TagEntry
from otel_ml.tf_summary._writers import WriterRegistry


def _bind(tag: Any, tensor: Any, step: Any = None, metadata: Any = None, name: Any = None) -> tuple[Any, ...]:
    return tag, tensor, step, metadata, name


def plugin_kind(metadata: Any) -> str:
    """``ml.summary.kind`` from a write's metadata (a SummaryMetadata proto, its bytes, or None)."""
    if metadata is None:
        return sc.SUMMARY_KIND_OTHER
    if isinstance(metadata, (bytes, bytearray)):
        from tensorboard.compat.proto.summary_pb2 import SummaryMetadata

        metadata = SummaryMetadata.FromString(bytes(metadata))
    return PLUGIN_KINDS.get(metadata.plugin_data.plugin_name, sc.SUMMARY_KIND_OTHER)


class SummaryWrappers:
    """The wrapt wrapper of ``write``, bound to one exporter, writer registry and TensorFlow.

    It is a :func:`passthrough`: the frame it adds is invisible to
    ``warnings``, so a warning TensorFlow raises in ``write`` keeps pointing
    where TensorFlow meant.
    """

    def __init__(self, exporter: SummaryExporter, writers: WriterRegistry, graph_mode: bool) -> None:
        import tensorflow as tf
        from tensorflow.python.ops import summary_ops_v2

        self._tf = tf
        self._ops = summary_ops_v2
        self._exporter = exporter
        self._writers = writers
        self._graph_mode = graph_mode
        self._hook = guarded("tf_summary.write")(self._make_hook)
        self.write = passthrough(self._write_enter, self._write_leave)

    def _write_enter(self, instance: Any, args: Any, kwargs: Any) -> Any:
        hooked = self._hook(args, kwargs)
        if hooked is None:
            return None, args, kwargs
        tag, _tensor, step, metadata, name = _bind(*args, **kwargs)
        return True, (tag, hooked), {"step": step, "metadata": metadata, "name": name}

    @staticmethod
    def _write_leave(state: Any, error: BaseException | None, result: Any) -> None:
        return None

    def _make_hook(self, args: Any, kwargs: Any) -> Any:
        """A replacement for the ``tensor`` argument, or None to leave the write alone."""
        tag, tensor, step, metadata, _name = _bind(*args, **kwargs)
        if self._ops._summary_state.writer is None:
            return None  # TensorFlow writes nothing, and neither do we
        if not isinstance(tag, str):
            return None  # a tag tensor: its value is only known inside the graph
        kind = plugin_kind(metadata)
        identity = self._tf.identity
        export = self._export

        def tensor_fn() -> Any:
            # Called by TensorFlow inside write()'s record(), under its "cpu:0" scope.
            value = tensor() if callable(tensor) else identity(tensor)
            return export(value, tag, kind, step)

        return tensor_fn

    def _export(self, value: Any, tag: str, kind: str, step: Any) -> Any:
        try:
            writer = self._ops._summary_state.writer
            run = self._writers.run_of(writer)
            entry = self._exporter.entry(run, tag, kind)
            reported = self._writers.claimed(writer)
            if step is None:
                step = self._ops.get_step()
            if self._tf.executing_eagerly():
                self._export_now(entry, run, kind, value, step, reported)
                return value
            if self._graph_mode:
                return self._export_in_graph(entry, run, kind, value, step, reported)
        except Exception as exc:  # noqa: BLE001 - never fail the user's write
            report("tf_summary.write", exc)
        return value

    def _export_now(
        self, entry: TagEntry | None, run: str, kind: str, value: Any, step: Any, reported: bool = False
    ) -> None:
        if entry is None:
            self._exporter.drop(run, kind)
            return
        number = value.numpy() if kind in CONTENT_KINDS else None
        entry.record(number, None if step is None else int(step), reported)

    def _export_in_graph(
        self, entry: TagEntry | None, run: str, kind: str, value: Any, step: Any, reported: bool = False
    ) -> Any:
        tf = self._tf
        exporter = self._exporter
        inputs = [tf.cast(step, tf.int64)] if step is not None else []
        if entry is not None and kind in CONTENT_KINDS:
            inputs.append(value)

        @guarded("tf_summary.graph_write")
        def on_step(*tensors: Any) -> None:
            # Runs on every step the graph records this summary.
            if entry is None:
                exporter.drop(run, kind)
                return
            step_value = int(tensors[0].numpy()) if step is not None else None
            entry.record(tensors[-1].numpy() if kind in CONTENT_KINDS else None, step_value, reported)

        op = tf.py_function(on_step, inputs, Tout=[], name="otel_ml_summary")
        with tf.control_dependencies([op]):
            return tf.identity(value)
