"""Binary COPY encoding and decoding, checked against hand-packed bytes."""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from scorer.io import declared as declared_types
from scorer.io import features, workers
from scorer.io.features import FeaturePlan, ModelInput, Snapshot
from scorer.io.sink import partition_name
from scorer.model import flavors
from scorer.postgres import wire
from scorer.postgres.identifiers import Relation

HEADER = wire.COPY_SIGNATURE + struct.pack(">ii", 0, 0)


Float = type[np.floating[Any]]


def with_dtype(plan: FeaturePlan, dtype: Float | None) -> FeaturePlan:
    """``plan`` parsing its numbers into ``dtype`` (the model's), or the default."""
    return plan if dtype is None else replace(plan, dtype=dtype)


def numeric_plan(names: tuple[str, ...], dtype: Float | None = None) -> FeaturePlan:
    fixed = (("id", ">i8"), ("null_id", "u1"), *((f"f{i}", ">f8") for i in range(len(names))))
    inputs = tuple(ModelInput(name, "number", "double") for name in names)
    plan = FeaturePlan(
        Relation(None, "t"), "id", "bigint", inputs, Snapshot("", ""),
        wire.RowLayout(fixed), "", (), names, (),
    )  # fmt: skip
    return with_dtype(plan, dtype)


def numeric_row(entity: int, null_id: bool, values: list[float]) -> bytes:
    row = struct.pack(">hiqi?", 2 + len(values), 8, entity, 1, null_id)
    for value in values:
        row += struct.pack(">id", 8, value)
    return row


def text_plan(dtype: Float | None = None) -> FeaturePlan:
    """A text id and one string feature in the tail, one number in the fixed part."""
    inputs = (ModelInput("contract", "string", "string"), ModelInput("tenure", "number", "double"))
    layout = wire.RowLayout((("tail", ">i4"), ("null_id", "u1"), ("f0", ">f8")), 2)
    plan = FeaturePlan(
        Relation(None, "t"), "customer_id", "text", inputs, Snapshot("", ""), layout, "",
        (), ("tenure",), ("contract",),
    )  # fmt: skip
    return with_dtype(plan, dtype)


def text_row(entity: bytes | None, contract: bytes | None, tenure: float) -> bytes:
    tail = [entity, contract]
    payload = b"".join(
        struct.pack(">i", -1) if value is None else struct.pack(">i", len(value)) + value
        for value in tail
    )
    size = sum(len(value) for value in tail if value is not None)
    fixed = struct.pack(">hii", 5, 4, size) + struct.pack(">i?", 1, entity is None)
    return fixed + struct.pack(">id", 8, tenure) + payload


TENURES = (1.0, 34.1, 2.0, 1_800_000_000.5)  # float32 rounds the second and the last
TEXT_STREAM = (
    HEADER
    + text_row(b"7590-VHVEG", b"Month-to-month", TENURES[0])
    + text_row(b"", None, TENURES[1])
    + text_row(None, b"One year", TENURES[2])
    + text_row("Zoë-1".encode(), b"Two year", TENURES[3])
    + wire.TRAILER
)


def read_all(plan: FeaturePlan, pieces: Iterable[bytes], chunk_rows: int = 1) -> list[wire.Rows]:
    chunks: list[wire.Rows] = []
    reader = wire.CopyReader(plan.layout, chunk_rows, chunks.append)
    for piece in pieces:
        reader.write(piece)
    reader.close()
    return chunks


def test_the_widest_text_in_a_chunks_last_row_is_read_whole() -> None:
    """A field's window is as wide as the chunk's widest value; the last row's reaches past
    the rows, into the padding, never past the buffer, and keeps none of it."""
    wide = b"Bank transfer (automatic), paid on the first of the month"
    stream = (
        HEADER
        + text_row(b"a", b"One year", 1.0)
        + text_row(b"b", None, 2.0)
        + text_row(b"c", wide, 3.0)
        + wire.TRAILER
    )
    (rows,) = read_all(text_plan(), [stream], chunk_rows=100)
    contract = rows.tail[1]
    assert contract.values.tolist() == [b"One year", b"", wide]
    assert contract.null.tolist() == [False, True, False]
    assert rows.tail[0].values.tolist() == [b"a", b"b", b"c"]
    assert rows.fixed["f0"].tolist() == [1.0, 2.0, 3.0]


def test_numeric_rows_reject_null_ids_and_infinite_values_by_column() -> None:
    plan = replace(numeric_plan(("a", "b")), dtype=np.float32)
    data = (
        numeric_row(1, False, [1.5, float("nan")])
        + numeric_row(2, True, [0.0, 0.0])
        + numeric_row(3, False, [float("inf"), 1.0])
        + numeric_row(4, False, [2.0, 1e39])
        + numeric_row(5, False, [-2.0, 3.25])
    )
    (rows,) = read_all(plan, [HEADER + data + wire.TRAILER], chunk_rows=100)
    chunk = features.to_chunk(rows, plan)
    assert (chunk.read, chunk.rejected) == (5, 3)
    assert chunk.rejected_by == {
        "id: id is NULL": 1,
        "a: infinite or beyond float32": 1,
        "b: infinite or beyond float32": 1,
    }
    np.testing.assert_array_equal(chunk.ids, [1, 5])
    assert chunk.numbers.dtype == np.float32
    np.testing.assert_array_equal(chunk.numbers, [[1.5, np.nan], [-2.0, 3.25]])


def test_float64_numbers_keep_every_value_float8_holds() -> None:
    plan = numeric_plan(("a", "b"))
    money, epoch = 1234.57, 1_764_000_000.123456
    data = (
        numeric_row(1, False, [money, 1e39])
        + numeric_row(2, False, [np.nextafter(money, 0.0), epoch])
        + numeric_row(3, False, [float("-inf"), 0.0])
    )
    (rows,) = read_all(plan, [HEADER + data + wire.TRAILER], chunk_rows=100)
    chunk = features.to_chunk(rows, plan)
    assert chunk.rejected_by == {"a: infinite": 1}
    assert chunk.numbers.dtype == np.float64
    assert chunk.numbers.tolist() == [[money, 1e39], [np.nextafter(money, 0.0), epoch]]


@pytest.mark.parametrize(
    ("declared", "typname", "values", "reason"),
    [
        ("long", "float8", [3.0, 73914.5, -2.5, float("nan")], "t: not an integer"),
        ("long", "numeric", [2.0**53, -(2.0**53), 2.5, 1.5], "t: not an integer"),
        ("long", "numeric", [2.0**53, 2.0**53 + 2, 1.0], "t: beyond 2**53, where float8"),
        ("long", "int8", [2.0**53, -(2.0**53) - 2, 2.0**60], "t: beyond 2**53, where float8"),
        ("integer", "float8", [2.0**31 - 1, -(2.0**31), 0.5], "t: not an integer"),
        ("integer", "float8", [2.0**31 - 1, 2.0**31, 7.0], "t: beyond the range of"),
        ("integer", "int8", [-(2.0**31), -(2.0**31) - 1, 2.0**40], "t: beyond the range of"),
        ("boolean", "numeric", [0.0, 1.0, 2.0, -1.0, 0.5, float("nan")], "t: not a boolean"),
    ],
)
def test_a_value_its_declared_type_cannot_hold_is_a_rejected_row(
    declared: str, typname: str, values: list[float], reason: str
) -> None:
    inputs = (ModelInput("t", "number", declared),)
    checks = declared_types.checks(0, "t", declared, typname)
    plan = replace(numeric_plan(("t",)), inputs=inputs, checks=checks)
    data = b"".join(numeric_row(i, False, [v]) for i, v in enumerate(values))
    (rows,) = read_all(plan, [HEADER + data + wire.TRAILER], chunk_rows=100)
    chunk = features.to_chunk(rows, plan)
    ((found, count),) = chunk.rejected_by.items()
    assert found.startswith(reason)
    refused = [v for v in values if not np.isnan(v) and v not in chunk.numbers[:, 0]]
    assert count == len(refused) == chunk.read - chunk.numbers.shape[0]


@pytest.mark.parametrize(
    ("declared", "typname"),
    [("integer", "int4"), ("integer", "int2"), ("long", "int4"), ("boolean", "bool")],
)
def test_a_sql_type_that_guarantees_the_declared_type_is_not_checked(
    declared: str, typname: str
) -> None:
    assert declared_types.checks(0, "t", declared, typname) == ()


@pytest.mark.parametrize("dtype", [None, np.float32, np.float64])
@pytest.mark.parametrize("split", range(len(TEXT_STREAM) + 1))
def test_text_rows_parse_the_same_wherever_the_stream_is_split(
    split: int, dtype: Float | None
) -> None:
    plan = text_plan(dtype)
    chunks = read_all(plan, [TEXT_STREAM[:split], TEXT_STREAM[split:]])
    parsed = [features.to_chunk(rows, plan) for rows in chunks]
    assert sum(chunk.read for chunk in parsed) == 4
    assert [i.decode() for chunk in parsed for i in chunk.ids.tolist()] == [
        "7590-VHVEG",
        "",
        "Zoë-1",
    ]
    strings = [flavors.python_strings(chunk.strings["contract"]) for chunk in parsed]
    assert [s for values in strings for s in values.tolist()] == [
        "Month-to-month",
        None,
        "Two year",
    ]
    numbers = np.concatenate([chunk.numbers[:, 0] for chunk in parsed])
    assert numbers.dtype == (dtype or np.float64)
    kept = np.array(TENURES)[[0, 1, 3]]  # the third row's id is NULL
    np.testing.assert_array_equal(numbers, kept.astype(dtype or np.float64))
    assert sum(chunk.rejected_by["customer_id: id is NULL"] for chunk in parsed) == 1


# Each value is one that float32 rounds (or cannot hold: 1e39), so that a parse into the
# wrong dtype, or through float32 on the way to float64, cannot pass.
PRECISE = np.array(
    [
        [0.1, 1_800_000_000.5],  # two-decimal-like, and epoch seconds (float32 steps by 128)
        [float(np.nextafter(1.0, 2.0)), np.nan],  # the next float64 after 1; NULL
        [-65.13, 1e39],  # money; beyond float32
        [16_777_217.0, 1_799_999_999_999_999.0],  # 2**24 + 1; epoch microseconds
    ]
)
PRECISE_STREAM = (
    HEADER
    + b"".join(numeric_row(i + 1, False, row.tolist()) for i, row in enumerate(PRECISE))
    + wire.TRAILER
)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("split", range(len(PRECISE_STREAM) + 1))
def test_numbers_parse_exactly_into_the_plans_dtype_wherever_the_stream_is_split(
    split: int, dtype: Float
) -> None:
    """float64 holds every value as the table sent it; float32 rounds them, and rejects the
    row it cannot hold (naming the column) rather than score infinity."""
    plan = numeric_plan(("a", "b"), dtype)
    chunks = read_all(plan, [PRECISE_STREAM[:split], PRECISE_STREAM[split:]])
    parsed = [features.to_chunk(rows, plan) for rows in chunks]
    assert all(chunk.numbers.dtype == dtype for chunk in parsed)
    with np.errstate(over="ignore"):
        expected = PRECISE.astype(dtype)
    fits = ~np.isinf(expected).any(axis=1)
    np.testing.assert_array_equal(
        np.concatenate([chunk.numbers for chunk in parsed]), expected[fits]
    )
    assert [int(i) for chunk in parsed for i in chunk.ids] == (np.flatnonzero(fits) + 1).tolist()
    reasons = [reason for chunk in parsed for reason in chunk.rejected_by]
    assert sum(chunk.rejected for chunk in parsed) == int((~fits).sum())
    assert all(reason.startswith("b: ") for reason in reasons)


@pytest.mark.parametrize("split", range(len(HEADER) + 1))
def test_a_header_split_at_any_byte_reads_every_row(split: int) -> None:
    plan = numeric_plan(("a",))
    body = numeric_row(1, False, [0.5]) + numeric_row(2, False, [0.25])
    stream = HEADER + body + wire.TRAILER
    pieces = [stream[:split], stream[split : split + 3], stream[split + 3 :]]
    chunks = read_all(plan, pieces)
    assert [int(i) for rows in chunks for i in rows.fixed["id"]] == [1, 2]


def test_stray_trailing_bytes_fail_the_stream() -> None:
    with pytest.raises(ValueError, match="3 stray bytes"):
        read_all(text_plan(), [TEXT_STREAM[:-2] + b"\x00\x05\x00" + wire.TRAILER[:0]])


def test_a_stream_without_the_binary_signature_fails() -> None:
    with pytest.raises(ValueError, match="no binary signature"):
        read_all(text_plan(), [b"x" * (len(TEXT_STREAM) + 64)])


def test_prediction_rows_match_the_binary_copy_format() -> None:
    payload = wire.encode_predictions(
        np.array([7, 8], dtype=np.int64), np.array([0.25, 0.75]), np.array([0, 1], np.int16)
    )

    def row(entity: int, score: float, label: int) -> bytes:
        return struct.pack(">hiqidih", 3, 8, entity, 8, score, 2, label)

    assert payload == HEADER + row(7, 0.25, 0) + row(8, 0.75, 1) + wire.TRAILER


def test_text_and_uuid_ids_and_rows_without_labels_are_encoded_exactly() -> None:
    ids = np.array([b"7590-VHVEG", b"", "Zoë".encode()], dtype="S12")
    payload = wire.encode_predictions(ids, np.array([0.5, 0.25, 1.0]), None)
    expected = b"".join(
        struct.pack(">hi", 2, len(value)) + value + struct.pack(">id", 8, score)
        for value, score in ((b"7590-VHVEG", 0.5), (b"", 0.25), ("Zoë".encode(), 1.0))
    )
    assert payload == HEADER + expected + wire.TRAILER
    raw = bytes(range(16))
    uuids = np.frombuffer(raw + raw[::-1], dtype="V16")
    payload = wire.encode_predictions(uuids, np.array([0.1, 0.2]), np.array([0, 0], np.int16))
    expected = b"".join(
        struct.pack(">hi", 3, 16) + value + struct.pack(">idih", 8, score, 2, 0)
        for value, score in ((raw, 0.1), (raw[::-1], 0.2))
    )
    assert payload == HEADER + expected + wire.TRAILER


def test_an_empty_chunk_is_a_valid_copy_stream() -> None:
    payload = wire.encode_predictions(
        np.array([], dtype=np.int64), np.array([]), np.array([], dtype=np.int16)
    )
    assert payload == HEADER + wire.TRAILER


def test_a_consumer_failure_is_handed_back_to_the_producer() -> None:
    cancelled = threading.Event()

    def consume(items: Iterable[int]) -> None:
        for item in items:
            if item == 3:
                raise RuntimeError("COPY failed")

    def produce() -> None:
        with workers.consumed(consume, cancelled.set, depth=1) as send:
            for item in range(1000):  # never blocks: the failed consumer keeps draining
                send(item)

    with pytest.raises(RuntimeError, match="COPY failed"):
        produce()
    assert not cancelled.is_set()  # the producer did not fail; the consumer's error won


def test_a_producer_failure_arrives_after_the_items_before_it() -> None:
    def produce(put: object) -> None:
        assert callable(put)
        put(1)
        put(2)
        raise ValueError("stream broke")

    got: list[int] = []
    with pytest.raises(ValueError, match="stream broke"):
        got.extend(workers.produced(produce, lambda: None))
    assert got == [1, 2]


def test_closing_the_stream_early_cancels_and_ends_the_producer() -> None:
    cancelled = threading.Event()
    ended = threading.Event()

    def produce(put: object) -> None:
        assert callable(put)
        try:
            for item in range(10_000):
                if cancelled.is_set():
                    return
                put(item)
        finally:
            ended.set()

    items = workers.produced(produce, cancelled.set, depth=1)
    assert next(items) == 0
    items.close()
    assert cancelled.is_set()
    assert ended.is_set()


@pytest.mark.parametrize(
    ("run_id", "readable"),
    [
        ("scorer-prod-29123456", "predictions_scorer_prod_29123456_"),
        ("Run 7/Ü", "predictions_run_7_"),
        ("x" * 200, "predictions_" + "x" * 40 + "_"),
    ],
)
def test_partition_names_are_readable_and_fit_an_identifier(run_id: str, readable: str) -> None:
    name = partition_name(run_id)
    assert name.startswith(readable)
    assert len(name) == len(readable) + 8
    assert len(name.encode()) <= 63


def test_partition_names_differ_when_run_ids_differ_only_in_punctuation() -> None:
    assert partition_name("a-b") != partition_name("a_b")
    assert partition_name("ü") != partition_name("é")
    assert partition_name("ü").startswith("predictions_")
