"""What keeps a small chunk cheap gives what a large one gives: one COPY of many chunks, the
score histogram of single scores, and one predict thread below the parallel size."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from scorer import flavors, wire
from scorer.stats import ScoreStats


def read_all(source: wire.JoinedCopy, size: int) -> bytes:
    pieces = []
    while piece := source.read(size):
        assert len(piece) <= size
        pieces.append(piece)
    return b"".join(pieces)


@pytest.mark.parametrize("size", [1, 7, 1 << 20])
@pytest.mark.parametrize("kind", ["bigint", "text"])
def test_chunks_joined_into_one_copy_are_the_copy_of_all_their_rows(size: int, kind: str) -> None:
    rng = np.random.default_rng(3)
    ids = np.arange(40, dtype=np.int64) if kind == "bigint" else np.array(
        [f"C-{i}".encode() * (i % 3 + 1) for i in range(40)]
    )  # fmt: skip
    scores, labels = rng.random(40), rng.integers(0, 2, 40).astype(np.int16)
    cuts = [0, 1, 1, 17, 40]  # an empty chunk too
    payloads = [
        wire.encode_predictions(ids[a:b], scores[a:b], labels[a:b]) for a, b in pairwise(cuts)
    ]
    joined = read_all(wire.JoinedCopy(payloads), size)
    assert joined == wire.encode_predictions(ids, scores, labels)
    assert read_all(wire.JoinedCopy([]), size) == wire.encode_predictions(ids[:0], scores[:0], None)


def test_a_payload_that_is_not_a_whole_stream_is_refused() -> None:
    whole = wire.encode_predictions(np.arange(2, dtype=np.int64), np.zeros(2), None)
    with pytest.raises(ValueError, match="not a complete binary COPY stream"):
        read_all(wire.JoinedCopy([whole[:-1]]), 1 << 20)


def test_small_chunks_make_the_histogram_large_ones_make() -> None:
    scores = np.random.default_rng(4).random(20_000)
    one_by_one, at_once = ScoreStats(), ScoreStats()
    for score in scores:
        one_by_one.add(np.array([score]), None)
    at_once.add(scores, None)
    np.testing.assert_array_equal(one_by_one.histogram, at_once.histogram)
    assert one_by_one.quantile(0.9) == at_once.quantile(0.9)


def test_a_chunk_below_the_parallel_size_predicts_on_one_thread() -> None:
    assert flavors._threads_for(1, 8) == 1
    assert flavors._threads_for(flavors._PARALLEL_ROWS - 1, 8) == 1
    assert flavors._threads_for(flavors._PARALLEL_ROWS, 8) == 8
