"""Event files built record by record with TensorBoard's own pure-Python writer (no TensorFlow needed)."""

from __future__ import annotations

import struct
from pathlib import Path

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.compat.proto.tensor_pb2 import TensorProto
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c


def frame(data: bytes) -> bytes:
    """One TFRecord: length, its masked CRC, the data, its masked CRC."""
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


def scalar(tag: str, value: float, step: int) -> bytes:
    """A serialised v1 scalar event (as tensorboardX and PyTorch write them)."""
    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
    return event_pb2.Event(step=step, wall_time=1.0, summary=summary).SerializeToString()


def string_under_scalars(tag: str, step: int) -> bytes:
    """A v2 event whose value is a string tensor although its metadata says ``scalars``."""
    metadata = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    tensor = TensorProto(dtype=7, string_val=[b"not a number"])  # 7: DT_STRING
    value = summary_pb2.Summary.Value(tag=tag, tensor=tensor, metadata=metadata)
    return event_pb2.Event(step=step, wall_time=1.0, summary=summary_pb2.Summary(value=[value])).SerializeToString()


def write_run(directory: Path, values: list[float], tag: str = "loss") -> Path:
    """An event file of ``values`` (one per step) in ``directory``; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "events.out.tfevents.1.host"
    path.write_bytes(b"".join(frame(scalar(tag, value, step)) for step, value in enumerate(values)))
    return path
