"""Streaming score statistics in constant memory."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

_BINS = 100_000  # quantiles resolve to 1e-5 on the probability scale
_SMALL = 16  # chunks under _BINS / _SMALL scores add to their bins one by one


@dataclass
class ScoreStats:
    """Mean, share labelled positive, histogram quantiles and label-like output of scores.

    Quantiles are for probabilities (scores in [0, 1]); raw scores get their mean only.
    """

    count: int = 0
    total: float = 0.0
    above: int = 0
    extremes: int = 0  # scores exactly 0 or 1: a model returning labels has nothing else
    histogram: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(_BINS, np.int64))

    def add(self, scores: npt.NDArray[np.floating], labels: npt.NDArray[np.integer] | None) -> None:
        """Fold one chunk of scores (and their 0/1 labels, if any) into the statistics."""
        if scores.size == 0:
            return
        self.count += int(scores.size)
        self.total += float(scores.sum(dtype=np.float64))
        if labels is not None:
            self.above += int(labels.sum(dtype=np.int64))
        self.extremes += int(np.count_nonzero((scores == 0.0) | (scores == 1.0)))
        bins = np.clip((scores * _BINS).astype(np.int64), 0, _BINS - 1)
        if bins.size * _SMALL < _BINS:  # a small chunk: touch its bins, not all of them
            np.add.at(self.histogram, bins, 1)
        else:
            self.histogram += np.bincount(bins, minlength=_BINS)

    @property
    def mean(self) -> float | None:
        """Mean score, or None with no rows."""
        return self.total / self.count if self.count else None

    def share_above(self, labelled: bool) -> float | None:
        """Share of rows labelled positive (score >= threshold), if there are labels."""
        return self.above / self.count if self.count and labelled else None

    @property
    def all_extreme(self) -> bool:
        """Every score is exactly 0 or 1 (what a model returning labels gives)."""
        return self.count >= 2 and self.extremes == self.count

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0 < q < 1), to 1e-5, as the midpoint of its histogram bin."""
        if not self.count:
            return None
        rank = int(np.ceil(q * self.count))
        index = int(np.searchsorted(np.cumsum(self.histogram), max(rank, 1)))
        return (index + 0.5) / _BINS


def figures(stats: ScoreStats, probabilities: bool, labelled: bool) -> dict[str, float | None]:
    """The statistics a run records and logs: quantiles for probabilities only."""
    return {
        "score_mean": stats.mean,
        "score_p50": stats.quantile(0.5) if probabilities else None,
        "score_p90": stats.quantile(0.9) if probabilities else None,
        "share_above_threshold": stats.share_above(labelled),
    }


def label(scores: npt.NDArray[np.floating], threshold: float) -> npt.NDArray[np.int16]:
    """0/1 labels: 1 where score >= threshold."""
    return (scores >= threshold).astype(np.int16)
