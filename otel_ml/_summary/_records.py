"""TFRecord framing, read in pure Python: nothing a file says can crash the reader.

An event file is a sequence of records, each::

    uint64 length | uint32 masked_crc32c(length bytes) | data[length] | uint32 masked_crc32c(data)

(little-endian; TensorBoard's ``record_writer`` and TensorFlow write the same).
TensorFlow's native reader trusts the length and crashes on a header that
claims 2^40 bytes, so records are read here: a header is checked (its CRC and
a size cap) before anything is allocated for the payload. Where reading stops
tells what to do next:

- ``END``: every complete record was read; the next read starts at ``offset``.
- ``PARTIAL``: the file ends inside a record (a writer mid-flush): wait for more.
- ``CORRUPT``: a header fails its CRC or the cap; the rest of the file cannot be framed.

A record whose payload fails its CRC is skipped (its header said where the
next one starts) and counted in ``Chunk.skipped``.
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass, field
from typing import BinaryIO, Final

END: Final = "end"
PARTIAL: Final = "partial"
CORRUPT: Final = "corrupt"
MAX_RECORD_BYTES: Final = 256 << 20
"""Largest payload accepted; event records are small (an image summary is a few MiB)."""
_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")


def _tables() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """CRC-32C (Castagnoli, reflected) tables: one byte, and two bytes at a time (twice as fast in Python)."""
    one = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        one.append(crc)
    two = tuple(one[(one[x & 0xFF] ^ (x >> 8)) & 0xFF] ^ (one[x & 0xFF] >> 8) for x in range(1 << 16))
    return tuple(one), two


_LITTLE: Final = sys.byteorder == "little"  # the pairs below are read in the machine's byte order
_ONE: tuple[int, ...] = ()
_TWO: tuple[int, ...] = ()


def masked_crc32c(data: bytes | memoryview) -> int:
    """The TFRecord checksum: CRC-32C of ``data``, rotated and offset.

    Example:
        >>> hex(masked_crc32c(b"hello"))
        '0x191c1fbb'
    """
    global _ONE, _TWO
    if not _TWO:
        _ONE, _TWO = _tables()  # built on first use, not at import: its cost is in bench/results/tf_summary.md
    one, two = _ONE, _TWO
    crc = 0xFFFFFFFF
    even = len(data) & ~1 if _LITTLE else 0
    for pair in memoryview(data)[:even].cast("H"):  # little-endian pairs: byte order as the stream
        crc = two[(crc ^ pair) & 0xFFFF] ^ (crc >> 16)
    for byte in memoryview(data)[even:]:  # the odd last byte (every byte on a big-endian machine)
        crc = one[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@dataclass
class Chunk:
    """What one :func:`read_records` call found."""

    records: list[bytes] = field(default_factory=list)
    offset: int = 0
    """Where the next read starts: just after the last complete record (or skipped one)."""
    tail: str = END
    skipped: int = 0
    full: bool = False
    """The read filled its budget: read again from ``offset`` at once."""


def read_records(handle: BinaryIO, offset: int, budget: int = 16 << 20, verify: bool = True) -> Chunk:
    """Read the complete records of ``handle`` from ``offset``: one read of at most ``budget`` bytes.

    Args:
        handle: The file, opened in binary mode.
        offset: Where a record starts.
        budget: Bytes read at once (a single larger record is read whole).
        verify: Check each payload's CRC too (headers are always checked). The in-process
            follower reads files its own TensorFlow is writing and skips it to halve its CPU.

    Example:
        >>> import io
        >>> data = b"abc"
        >>> frame = struct.pack("<Q", 3)
        >>> raw = frame + struct.pack("<I", masked_crc32c(frame)) + data + struct.pack("<I", masked_crc32c(data))
        >>> chunk = read_records(io.BytesIO(raw + raw[:5]), 0)
        >>> chunk.records, chunk.offset, chunk.tail
        ([b'abc'], 19, 'partial')
    """
    budget = max(budget, _HEADER.size)  # so that a full read always holds a header
    handle.seek(offset)
    buffer = handle.read(budget)
    view, end, pos = memoryview(buffer), len(buffer), 0
    more = end == budget  # the file may go on beyond this read
    chunk = Chunk(offset=offset)
    while pos < end:
        if end - pos < _HEADER.size:
            chunk.tail = PARTIAL
            break
        length, length_crc = _HEADER.unpack_from(buffer, pos)
        if length_crc != masked_crc32c(view[pos : pos + 8]) or length > MAX_RECORD_BYTES:
            chunk.tail = CORRUPT
            break
        start, stop = pos + _HEADER.size, pos + _HEADER.size + length + _FOOTER.size
        if stop > end:
            if more and pos == 0:  # one record larger than the budget: read it whole
                return read_records(handle, offset, stop, verify)
            chunk.tail = PARTIAL
            break
        data = bytes(view[start : start + length])
        if not verify or _FOOTER.unpack_from(buffer, start + length)[0] == masked_crc32c(data):
            chunk.records.append(data)
        else:
            chunk.skipped += 1
        pos = stop
    chunk.offset = offset + pos
    if more and chunk.tail != CORRUPT:
        chunk.tail, chunk.full = END, True  # read on from chunk.offset
    return chunk
