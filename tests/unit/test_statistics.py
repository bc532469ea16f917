"""Streaming statistics agree with numpy on the whole array."""

from __future__ import annotations

import numpy as np
import pytest

from scorer.run.statistics import ScoreStats, label


def test_streamed_statistics_match_numpy() -> None:
    rng = np.random.default_rng(1)
    scores = rng.beta(2, 5, 100_003)
    stats = ScoreStats()
    for chunk in np.array_split(scores, 7):
        stats.add(chunk, label(chunk, 0.4))
    assert stats.count == scores.size
    assert stats.mean == pytest.approx(scores.mean(), rel=1e-12)
    assert stats.share_above(labelled=True) == pytest.approx((scores >= 0.4).mean())
    for q in (0.5, 0.9):
        assert stats.quantile(q) == pytest.approx(
            np.quantile(scores, q, method="inverted_cdf"), abs=1e-5
        )


def test_quantiles_of_discrete_scores_are_exact_to_the_bin() -> None:
    scores = np.array([0.1] * 5 + [0.7] * 5)
    stats = ScoreStats()
    stats.add(scores, label(scores, 0.5))
    assert stats.quantile(0.5) == pytest.approx(0.1, abs=1e-5)
    assert stats.quantile(0.9) == pytest.approx(0.7, abs=1e-5)
    assert stats.share_above(labelled=True) == 0.5


def test_edges_and_empty() -> None:
    stats = ScoreStats()
    assert (stats.mean, stats.quantile(0.5), stats.share_above(labelled=True)) == (None, None, None)
    edges = np.array([0.0, 1.0, 1.0])
    stats.add(edges, label(edges, 0.5))
    assert stats.quantile(0.9) == pytest.approx(1.0, abs=1e-5)
    assert stats.quantile(0.1) == pytest.approx(0.0, abs=1e-5)


def test_label_is_inclusive_at_the_threshold() -> None:
    np.testing.assert_array_equal(label(np.array([0.49, 0.5, 0.51]), 0.5), [0, 1, 1])


def test_labels_as_scores_are_told_apart_from_probabilities() -> None:
    labels_only = ScoreStats()
    labels_only.add(np.array([0.0, 1.0, 1.0, 0.0]), None)
    assert labels_only.all_extreme
    assert labels_only.share_above(labelled=False) is None
    probabilities = ScoreStats()
    probabilities.add(np.array([0.0, 1.0, 0.5]), None)
    assert not probabilities.all_extreme
