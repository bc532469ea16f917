"""Binary COPY encoding and decoding, checked against hand-packed bytes."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from scorer.features import COPY_SIGNATURE, FeaturePlan, parse_rows
from scorer.identifiers import Relation
from scorer.sink import encode, partition_name


def feature_row(entity: int, bad: bool, values: list[float]) -> bytes:
    row = struct.pack(">hiqi?", 2 + len(values), 8, entity, 1, bad)
    for value in values:
        row += struct.pack(">id", 8, value)
    return row


def test_parse_rows_rejects_flagged_and_infinite_rows() -> None:
    plan = FeaturePlan(Relation(None, "t"), "id", ("a", "b"), "")
    data = (
        feature_row(1, False, [1.5, float("nan")])
        + feature_row(2, True, [0.0, 0.0])
        + feature_row(3, False, [float("inf"), 1.0])
        + feature_row(4, False, [1e39, 2.0])
        + feature_row(5, False, [-2.0, 3.25])
    )
    chunk = parse_rows(data, plan)
    assert (chunk.read, chunk.rejected) == (5, 3)
    np.testing.assert_array_equal(chunk.ids, [1, 5])
    assert chunk.features.dtype == np.float32
    np.testing.assert_array_equal(chunk.features, [[1.5, np.nan], [-2.0, 3.25]])


def test_prediction_rows_match_the_binary_copy_format() -> None:
    payload = encode(
        np.array([7, 8], dtype=np.int64),
        np.array([0.25, 0.75]),
        np.array([0, 1], dtype=np.int16),
    )
    header = COPY_SIGNATURE + struct.pack(">ii", 0, 0)

    def row(entity: int, score: float, label: int) -> bytes:
        return struct.pack(">hiqidih", 3, 8, entity, 8, score, 2, label)

    assert payload == header + row(7, 0.25, 0) + row(8, 0.75, 1) + b"\xff\xff"


def test_an_empty_chunk_is_a_valid_copy_stream() -> None:
    payload = encode(np.array([], dtype=np.int64), np.array([]), np.array([], dtype=np.int16))
    assert payload == COPY_SIGNATURE + struct.pack(">ii", 0, 0) + b"\xff\xff"


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
