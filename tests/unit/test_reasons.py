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


def decoded(fields: wire.Fields) -> list[list[list[object]]]:
    """Each row's jsonb field as JSON, checked to be binary jsonb (version 1) of its length."""
    rows, start = [], 0
    for end in fields.ends.tolist():
        field = fields.data[start:end].tobytes()
        assert int.from_bytes(field[:4], "big") == len(field) - 4
        assert field[4:5] == b"\x01"
        rows.append(json.loads(field[5:]))
        start = end
    return rows


def test_the_largest_magnitudes_come_first_the_bias_column_left_out() -> None:
    contributions = np.array([[0.1, -0.5, 0.3, 0.0, 9.0], [2.0, 1.0, -3.0, 0.5, 9.0]])
    assert decoded(reasons.encode(["a", "b", "c", "d"], contributions, 2)) == [
        [["b", -0.5], ["c", 0.3]],
        [["c", -3.0], ["a", 2.0]],
    ]


def test_k_beyond_the_inputs_keeps_every_input_and_ties_keep_their_order() -> None:
    assert decoded(reasons.encode(["a", "b", "c"], np.array([[0.1, -0.5, 0.5, 0.0]]), 5)) == [
        [["b", -0.5], ["c", 0.5], ["a", 0.1]]
    ]


def test_names_are_json_strings_and_values_have_nine_significant_digits() -> None:
    rng = np.random.default_rng(3)
    values = rng.standard_normal((200, 6)) * 10.0 ** rng.integers(-12, 12, (200, 6))
    values[0, :3] = [-0.0, 1e-300, -123456789012.0]
    names = ["contract", 'odd "name"', "ünïcode", "back\\slash", "tab\tname", "x"]
    for row, pairs in zip(values, decoded(reasons.encode(names, values, 4)), strict=True):
        expected = sorted(range(6), key=lambda c: -abs(row[c]))[:4]
        assert [name for name, _ in pairs] == [names[c] for c in expected]
        assert [value for _, value in pairs] == [float(f"{row[c]:.9g}") for c in expected]


def test_each_contribution_is_written_as_printf_writes_nine_significant_digits() -> None:
    """The usual numbers are written from their digits, the rest by printf: both as ``%.9g``,
    on every magnitude, at the carries (9.999999995) and on exact ties at the tenth digit
    (12345678.75: half to even)."""
    rng = np.random.default_rng(7)
    values = [*(rng.standard_normal(20_000) * 10.0 ** rng.uniform(-7, 11, 20_000))]
    for exponent in range(-6, 10):
        for mantissa in (1.0, 5.0, 9.99999999, 9.999999995, 9.9999999949, 1.000000005):
            values += [mantissa * 10.0**exponent, -mantissa * 10.0**exponent]
    values += [k / 4 for k in range(49_382_716, 49_382_736)]  # 12345679.0 to .75: ties
    values += [0.0, -0.0, 1e-4, 9.999999995e-5, 1e8, 99999999.999999, 5e-324, 1e300]
    written = reasons.encode(["x"], np.array(values)[:, None], 1)
    expected = [b'\x01[["x",' + (b"%.9g" % value) + b"]]" for value in values]
    starts = np.concatenate([[0], written.ends[:-1]])
    assert [
        written.data[start + 4 : end].tobytes()
        for start, end in zip(starts.tolist(), written.ends.tolist(), strict=True)
    ] == expected


def fields_of(values: list[bytes]) -> wire.Fields:
    """Binary COPY fields of ``values``, end to end."""
    data = b"".join(len(value).to_bytes(4, "big") + value for value in values)
    ends = np.cumsum([4 + len(value) for value in values], dtype=np.int64)
    return wire.Fields(np.frombuffer(data, dtype=np.uint8), ends)


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
    carried = rows_of(wire.encode_predictions(ids, scores, labels, fields_of(last)))
    assert carried == [[*row, value] for row, value in zip(plain, last, strict=True)]


def test_no_rows_with_reasons_is_an_empty_stream() -> None:
    empty = np.array([], dtype=np.int64)
    stream = wire.encode_predictions(empty, np.array([]), None, fields_of([]))
    assert stream == HEADER + wire.TRAILER


def test_fields_for_another_number_of_rows_are_refused() -> None:
    ids = np.array([7, 8], dtype=np.int64)
    with pytest.raises(ValueError, match="1 fields for 2 rows"):
        wire.encode_predictions(ids, np.array([0.1, 0.2]), None, fields_of([b"\x01[]"]))


def test_contributions_narrower_than_the_names_are_refused() -> None:
    with pytest.raises(ValueError, match="contributions of 3 inputs"):
        reasons.encode(["a", "b", "c"], np.zeros((4, 2)), 1)
