"""PostgreSQL's binary COPY format, both ways: feature rows in, prediction rows out.

A feature row is a fixed-width prefix (every number, flag and fixed-size id) followed by a
variable-width tail (text ids and string features). The feature query puts the tail's total
byte length first, so finding row boundaries costs one integer read per row, and everything
else is parsed by numpy over whole chunks: each field is one gather of fixed-width windows
over the chunk's bytes. Rows without a tail have a fixed width and need no walk at all.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from scorer import compiled

COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
HEADER_BYTES = len(COPY_SIGNATURE) + 8  # signature, flags, header-extension length
TRAILER = b"\xff\xff"
_OUT_HEADER = COPY_SIGNATURE + bytes(8)
_TAIL_LENGTH_AT = 2 + 4  # the tail-length field's value: after the field count and its length

Bytes = bytes | bytearray | memoryview


@dataclass(frozen=True)
class RowLayout:
    """The shape of one feature row: named fixed-width fields, then ``tail_fields`` texts.

    ``fixed`` holds (name, numpy type) pairs in row order; each becomes a 4-byte length plus
    the value in the structured dtype. With a tail, the first fixed field must be the tail's
    byte count (an ``int4``), so that rows can be found without reading the tail.
    """

    fixed: tuple[tuple[str, str], ...]
    tail_fields: int = 0

    @property
    def dtype(self) -> np.dtype[Any]:
        """numpy layout of a row's fixed-width prefix."""
        fields: list[tuple[str, str]] = [("count", ">i2")]
        for name, kind in self.fixed:
            fields += [(f"{name}_len", ">i4"), (name, kind)]
        return np.dtype(fields)


@dataclass(frozen=True)
class Texts:
    """One variable-width column of a chunk: UTF-8 bytes per row, and where it was NULL."""

    values: npt.NDArray[np.bytes_]
    null: npt.NDArray[np.bool_]

    def kept(self, keep: npt.NDArray[np.bool_]) -> Texts:
        """The rows where ``keep`` is true."""
        return Texts(self.values[keep], self.null[keep])


@dataclass(frozen=True)
class Rows:
    """Whole rows of a chunk: the fixed prefixes as a structured array, and the tail columns."""

    fixed: npt.NDArray[np.void]
    tail: tuple[Texts, ...]


def row_starts(
    buffer: Bytes, end: int, layout: RowLayout
) -> tuple[npt.NDArray[np.int64] | int, int]:
    """The whole rows in ``buffer[:end]``, and the offset after the last one.

    Rows of a fixed width are given by their count; rows with a tail by their offsets.
    """
    width = layout.dtype.itemsize
    if not layout.tail_fields:
        count = end // width
        return count, count * width
    read_length = struct.Struct(">i").unpack_from
    extra = width + 4 * layout.tail_fields
    starts: list[int] = []
    position = 0
    while position + width <= end:
        size = extra + read_length(buffer, position + _TAIL_LENGTH_AT)[0]
        if position + size > end:
            break
        starts.append(position)
        position += size
    return np.asarray(starts, dtype=np.int64), position


def parse(
    raw: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64] | int, layout: RowLayout
) -> Rows:
    """Parse the rows that ``row_starts`` found at the beginning of ``raw``.

    Rows with a tail are copied out field by field through windows as wide as the field
    (one gather of whole rows of bytes each), so ``raw`` must extend past its last row by at
    least the widest row: ``CopyReader`` pads it with zeros.
    """
    layout_dtype = layout.dtype
    if isinstance(starts, int):
        return Rows(np.frombuffer(raw, dtype=layout_dtype, count=starts), ())
    count, width = int(starts.size), layout_dtype.itemsize
    fixed = _windows(raw, width)[starts].view(layout_dtype).reshape(count)
    tail: list[Texts] = []
    position = starts + width
    for _ in range(layout.tail_fields):
        lengths = _windows(raw, 4)[position].view(">i4").reshape(count)
        sizes = np.maximum(lengths, 0)
        tail.append(_texts(raw, position + 4, sizes, lengths < 0))
        position = position + 4 + sizes
    return Rows(fixed, tuple(tail))


def _windows(raw: npt.NDArray[np.uint8], width: int) -> npt.NDArray[np.uint8]:
    """Every ``width`` bytes of ``raw`` from each offset: a view, nothing copied."""
    return np.lib.stride_tricks.sliding_window_view(raw, width)


def _texts(
    raw: npt.NDArray[np.uint8],
    at: npt.NDArray[np.int64],
    sizes: npt.NDArray[Any],
    null: npt.NDArray[np.bool_],
) -> Texts:
    width = int(sizes.max()) if sizes.size else 0
    if width == 0:
        return Texts(np.zeros(sizes.size, dtype="S1"), null)
    values = _windows(raw, width)[at]
    values[np.arange(width) >= sizes[:, None]] = 0  # the next fields' bytes: NUL, as S pads
    return Texts(values.view(f"S{width}").reshape(sizes.size), null)


class CopyReader:
    """A file-like target for ``copy_expert`` that cuts the stream into parsed chunks.

    ``emit`` receives each chunk of at least ``chunk_rows`` whole rows (the last may be
    smaller). The stream must start with the binary signature and end with the trailer.
    """

    def __init__(self, layout: RowLayout, chunk_rows: int, emit: Callable[[Rows], None]) -> None:
        self._layout = layout
        self._chunk_bytes = chunk_rows * layout.dtype.itemsize
        self._emit = emit
        self._buffer = bytearray()
        self._header_seen = False

    def write(self, data: Bytes) -> int:
        """Take the next piece of the stream (any size, any boundary)."""
        self._buffer += data
        if len(self._buffer) >= self._chunk_bytes + HEADER_BYTES:
            self._flush()
        return len(data)

    def _flush(self) -> None:
        if not self._header_seen:
            if len(self._buffer) < HEADER_BYTES:
                return
            if self._buffer[: len(COPY_SIGNATURE)] != COPY_SIGNATURE:
                raise ValueError("unexpected COPY stream: no binary signature")
            extension = int.from_bytes(self._buffer[HEADER_BYTES - 4 : HEADER_BYTES], "big")
            if len(self._buffer) < HEADER_BYTES + extension:
                return
            del self._buffer[: HEADER_BYTES + extension]
            self._header_seen = True
        starts, end = row_starts(self._buffer, len(self._buffer), self._layout)
        if end:
            # One copy of the whole rows, padded by the widest row for parse's windows.
            pad = 0 if isinstance(starts, int) else int(np.diff(starts, append=end).max())
            raw = np.empty(end + pad, dtype=np.uint8)
            with memoryview(self._buffer) as view:
                raw[:end] = np.frombuffer(view, dtype=np.uint8, count=end)
            raw[end:] = 0
            del self._buffer[:end]
            self._emit(parse(raw, starts, self._layout))

    def close(self) -> None:
        """Emit what is left; the stream must end with the binary trailer and nothing else."""
        self._flush()
        if not self._header_seen:
            raise ValueError("unexpected COPY stream end: no binary header")
        if bytes(self._buffer) != TRAILER:
            raise ValueError(f"unexpected COPY stream end ({len(self._buffer)} stray bytes)")


@dataclass(frozen=True)
class Fields:
    """One more field per row, each already in binary COPY form (its 4-byte length, then its
    value), end to end in ``data``; ``ends``: where each row's field ends in it."""

    data: npt.NDArray[np.uint8]
    ends: npt.NDArray[np.int64]


def encode_predictions(
    ids: npt.NDArray[Any],
    scores: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int16] | None,
    last: Fields | None = None,
) -> bytes:
    """One complete binary COPY stream of (entity_id, score[, label][, last]) rows.

    ``ids`` are int64 (bigint), ``V16`` (uuid, 16 raw bytes) or ``S<n>`` (UTF-8 text, the
    length of each row's own); ``last``: one more field per row (the reasons' jsonb).
    """
    if last is not None:
        body = encode_predictions(ids, scores, labels)[len(_OUT_HEADER) : -len(TRAILER)]
        given = 2 if labels is None else 3
        return b"".join((_OUT_HEADER, _append_field(body, ids, given, last), TRAILER))
    n = int(ids.size)
    fields: list[tuple[str, str]] = [("score_len", ">i4"), ("score", ">f8")]
    if labels is not None:
        fields += [("label_len", ">i4"), ("label", ">i2")]
    tail = np.zeros(n, dtype=np.dtype(fields))
    tail["score_len"], tail["score"] = 8, scores
    if labels is not None:
        tail["label_len"], tail["label"] = 2, labels
    count = 2 if labels is None else 3
    if n == 0:
        return _OUT_HEADER + TRAILER
    if ids.dtype.kind in "iuV":
        value = ">i8" if ids.dtype.kind in "iu" else "V16"
        head = np.zeros(n, dtype=[("count", ">i2"), ("id_len", ">i4"), ("id", value)])
        head["count"], head["id_len"], head["id"] = count, head.dtype["id"].itemsize, ids
        rows = np.concatenate(
            [head.view(np.uint8).reshape(n, -1), tail.view(np.uint8).reshape(n, -1)], axis=1
        )
        return b"".join((_OUT_HEADER, rows.tobytes(), TRAILER))
    return b"".join((_OUT_HEADER, _variable_rows(ids, count, tail), TRAILER))


def _variable_rows(ids: npt.NDArray[np.bytes_], count: int, tail: npt.NDArray[np.void]) -> bytes:
    """Rows whose first field is a byte string of its own length, then the fixed ``tail``."""
    n = int(ids.size)
    width = ids.dtype.itemsize
    raw_ids = ids.view(np.uint8).reshape(n, width)
    sizes = np.char.str_len(ids).astype(np.int64)
    head = np.zeros(n, dtype=[("count", ">i2"), ("id_len", ">i4")])
    head["count"], head["id_len"] = count, sizes
    tail_bytes = tail.view(np.uint8).reshape(n, -1)
    row_sizes = 6 + sizes + tail_bytes.shape[1]
    starts = np.concatenate(([0], np.cumsum(row_sizes)[:-1]))
    out = np.empty(int(row_sizes.sum()), dtype=np.uint8)
    out[starts[:, None] + np.arange(6)] = head.view(np.uint8).reshape(n, 6)
    columns = np.arange(width)
    inside = columns < sizes[:, None]
    out[(starts[:, None] + 6 + columns)[inside]] = raw_ids[inside]
    tail_at = starts + 6 + sizes
    out[tail_at[:, None] + np.arange(tail_bytes.shape[1])] = tail_bytes
    return out.tobytes()


def _append_field(rows: bytes, ids: npt.NDArray[Any], count: int, last: Fields) -> bytes:
    """Each of ``rows`` (encoded from ``ids``, ``count`` fields each) with one more field, its
    row's from ``last`` (by ``_append_field.c``: one copy of each)."""
    n = int(ids.size)
    if last.ends.shape != (n,):
        raise ValueError(f"{last.ends.size} fields for {n} rows")
    if n == 0:
        return rows
    sizes = np.zeros(n, dtype=np.int64)
    if ids.dtype.kind not in "iuV":  # text ids: each row as long as its own id
        sizes = np.char.str_len(ids).astype(np.int64)
    sizes += (len(rows) - int(sizes.sum())) // n
    row_ends = np.cumsum(sizes)
    data = np.ascontiguousarray(last.data)
    ends = np.ascontiguousarray(last.ends, dtype=np.int64)
    out = np.empty(len(rows) + int(ends[-1]), dtype=np.uint8)
    compiled.library().scorer_append_field(
        rows, row_ends.ctypes.data, data.ctypes.data, ends.ctypes.data, n, count + 1,
        out.ctypes.data,
    )  # fmt: skip
    return out.tobytes()
