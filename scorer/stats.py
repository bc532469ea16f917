"""Streaming score statistics in constant memory."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

_BINS = 100_000  # quantiles resolve to 1e-5 on the probability scale


@dataclass
class ScoreStats:
    """Count, mean, share above threshold and histogram quantiles of scores in [0, 1]."""

    threshold: float
    count: int = 0
    total: float = 0.0
    above: int = 0
    histogram: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(_BINS, np.int64))

    def add(self, scores: npt.NDArray[np.floating], labels: npt.NDArray[np.integer]) -> None:
        """Fold one chunk of scores (and their 0/1 labels) into the statistics."""
        if scores.size == 0:
            return
        self.count += int(scores.size)
        self.total += float(scores.sum(dtype=np.float64))
        self.above += int(labels.sum(dtype=np.int64))
        bins = np.clip((scores * _BINS).astype(np.int64), 0, _BINS - 1)
        self.histogram += np.bincount(bins, minlength=_BINS)

    @property
    def mean(self) -> float | None:
        """Mean score, or None with no rows."""
        return self.total / self.count if self.count else None

    @property
    def share_above(self) -> float | None:
        """Share of rows labelled positive (score >= threshold)."""
        return self.above / self.count if self.count else None

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0 < q < 1), to 1e-5, as the midpoint of its histogram bin."""
        if not self.count:
            return None
        rank = int(np.ceil(q * self.count))
        index = int(np.searchsorted(np.cumsum(self.histogram), max(rank, 1)))
        return (index + 0.5) / _BINS


def label(scores: npt.NDArray[np.floating], threshold: float) -> npt.NDArray[np.int16]:
    """0/1 labels: 1 where score >= threshold."""
    return (scores >= threshold).astype(np.int16)
