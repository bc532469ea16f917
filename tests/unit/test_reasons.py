"""Reasons without a database: the top K per row, their jsonb, and the COPY rows that carry
them, checked against hand-packed bytes."""

from __future__ import annotations

import json
import struct
import uuid

import numpy as np
import pytest

from scorer.model import reasons
from scorer.postgres import wire

HEADER = wire.COPY_SIGNATURE + struct.pack(">ii", 0, 0)


def test_top_takes_the_largest_magnitudes_largest_first() -> None:
    contributions = np.array([[0.1, -0.5, 0.3, 0.0], [2.0, 1.0, -3.0, 0.5]])
    indices, values = reasons.top(contributions, 2)
    assert indices.tolist() == [[1, 2], [2, 0]]
    assert values.tolist() == [[-0.5, 0.3], [-3.0, 2.0]]


def test_top_with_k_beyond_the_inputs_keeps_every_input() -> None:
    indices, values = reasons.top(np.array([[0.1, -0.5]]), 5)
    assert indices.tolist() == [[1, 0]]
    assert values.tolist() == [[-0.5, 0.1]]


def test_encode_is_binary_jsonb_of_name_contribution_pairs() -> None:
    encoded = reasons.encode(
        ["contract", 'odd "name"'], np.array([[1, 0]]), np.array([[-0.25, 0.1]])
    )
    assert encoded[0][:1] == b"\x01"
    assert json.loads(encoded[0][1:]) == [['odd "name"', -0.25], ["contract", 0.1]]


def rows_of(stream: bytes) -> list[list[bytes | None]]:
    """Decode a binary COPY stream's rows, field by field."""
    assert stream.startswith(HEADER)
    assert stream.endswith(wire.TRAILER)
    body, at, rows = stream[len(HEADER) : -len(wire.TRAILER)], 0, []
    while at < len(body):
        (count,) = struct.unpack_from(">h", body, at)
        at += 2
        fields: list[bytes | None] = []
        for _ in range(count):
            (size,) = struct.unpack_from(">i", body, at)
            at += 4
            fields.append(None if size < 0 else body[at : at + size])
            at += max(size, 0)
        rows.append(fields)
    return rows


@pytest.mark.parametrize(
    "ids",
    [
        np.array([7, -2], dtype=np.int64),
        np.array([b"7590-VHVEG", b"x"], dtype="S10"),
        np.array([uuid.UUID(int=1).bytes, uuid.UUID(int=2).bytes], dtype="V16"),
    ],
)
@pytest.mark.parametrize("labelled", [True, False])
def test_the_reasons_field_comes_last_on_each_row(ids: np.ndarray, labelled: bool) -> None:
    scores = np.array([0.25, 0.75])
    labels = np.array([0, 1], dtype=np.int16) if labelled else None
    last = [b"\x01[]", b'\x01[["a",1]]']
    plain = rows_of(wire.encode_predictions(ids, scores, labels))
    carried = rows_of(wire.encode_predictions(ids, scores, labels, last))
    assert carried == [[*row, value] for row, value in zip(plain, last, strict=True)]


def test_no_rows_with_reasons_is_an_empty_stream() -> None:
    empty = np.array([], dtype=np.int64)
    assert wire.encode_predictions(empty, np.array([]), None, []) == HEADER + wire.TRAILER
