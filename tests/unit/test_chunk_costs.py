"""What keeps a small chunk cheap gives what a large one gives: the score histogram of single
scores, and one predict thread below the parallel size."""

from __future__ import annotations

import numpy as np

from scorer.model import flavors
from scorer.run.statistics import ScoreStats


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
