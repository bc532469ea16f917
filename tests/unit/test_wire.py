"""Binary COPY encoding and decoding, checked against hand-packed bytes."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import numpy as np

from scorer.features import COPY_SIGNATURE, FeaturePlan, parse_rows
from scorer.identifiers import Relation
from scorer.sink import Lineage, PredictionEncoder


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
    scored_at = datetime(2000, 1, 2, 0, 0, 1, 5, tzinfo=UTC)
    encoder = PredictionEncoder(Lineage("run-1", "churn", 3, "2026-11-27", scored_at))
    payload = encoder.encode(
        np.array([7, 8], dtype=np.int64),
        np.array([0.25, 0.75]),
        np.array([0, 1], dtype=np.int16),
    )
    header = COPY_SIGNATURE + struct.pack(">ii", 0, 0)
    micros = 86_400 * 1_000_000 + 1_000_000 + 5

    def row(entity: int, score: float, label: int) -> bytes:
        return (
            struct.pack(">h", 8)
            + struct.pack(">i", 5)
            + b"run-1"
            + struct.pack(">iq", 8, entity)
            + struct.pack(">id", 8, score)
            + struct.pack(">ih", 2, label)
            + struct.pack(">i", 5)
            + b"churn"
            + struct.pack(">ii", 4, 3)
            + struct.pack(">i", 10)
            + b"2026-11-27"
            + struct.pack(">iq", 8, micros)
        )

    assert payload == header + row(7, 0.25, 0) + row(8, 0.75, 1) + b"\xff\xff"


def test_unicode_lineage_is_encoded_by_byte_length() -> None:
    encoder = PredictionEncoder(Lineage("r", "churn-ü", 1, "s", datetime(2026, 1, 1, tzinfo=UTC)))
    payload = encoder.encode(np.array([1]), np.array([0.5]), np.array([1], dtype=np.int16))
    assert struct.pack(">i", len("churn-ü".encode())) + "churn-ü".encode() in payload
