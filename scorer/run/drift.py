"""Per-feature drift: each feature's distribution against the reference run's, as PSI.

While a run streams, ``Collector.add`` folds each chunk's already parsed arrays into:

- per numeric input (numbers, booleans, datetimes as epoch microseconds), counts over the
  reference run's bins (one comparison per bin edge; NULL/NaN is in no bin: the NULL-share
  check watches it);
- a uniform sample of ``SAMPLE_ROWS`` rows' numbers (random keys, the smallest kept), held in
  memory only, from which the run's own quantile bins come at the end;
- per categorical input whose categories the model records (xgboost, lightgbm), counts per
  known category, and one ``other`` count for values the model does not know (NULL apart).

``Collector.evidence`` is what was gathered, as ``Evidence``: the counts (which merge
exactly) and the sample's own bins, never a sampled row. ``Evidence.figures`` is the run's PSI
per feature against the reference's bins, and why a feature was not checked.
``Evidence.bins`` is what the run records (``scoring_runs.feature_bins``) for the runs that
follow it: per numeric input its bin edges (midpoints between neighbouring distinct values of
the sample, so no value sits on an edge, at the ``QUANTILES``) with each bin's share of the
sample, and per categorical input the share of each known category and of ``other``.

A sharded run: each shard records its ``Evidence`` on its ``scoring_run_shards`` row, and the
shard that publishes sums them (``Evidence.merge``), so its PSI is exactly a single run's over
the same rows. Its category shares are exact too. Its numeric bins keep the reference's edges
with the run's exact shares over them (a shard's sample is of its range of ids, which need not
resemble the run); where the reference has no bins for a feature, they are the lowest-index
shard's own. No other value of any feature is recorded or logged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from scorer.io.features import Chunk, FeaturePlan
from scorer.postgres import wire

SAMPLE_ROWS = 20_000
"""Rows sampled for a run's own quantile bins: its shares are within ~0.003 of exact."""
QUANTILES = np.array([0.001, *(np.arange(1, 10) / 10), 0.999])
"""The reference's bin edges: its deciles, and its 0.1% and 99.9% quantiles, so that values
beyond the reference's range (a new default of 0, a unit change) get bins of their own
(fewer edges where values repeat)."""
WARN_PSI = 0.1
"""A feature PSI above this (and within ``SCORER_MAX_FEATURE_PSI``) logs a warning."""
FLOOR = 1e-4
"""Shares below this count as this, so an empty bin does not make PSI infinite."""

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


def psi(expected: Floats, actual: Floats) -> float:
    """Population stability index between two share vectors over the same bins."""
    expected, actual = np.maximum(expected, FLOOR), np.maximum(actual, FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


@dataclass(frozen=True)
class NumericBins:
    """A numeric feature's bins: ``edges`` (ascending), bin i is edges[i-1] <= x < edges[i]."""

    edges: Floats
    shares: Floats  # len(edges) + 1, summing to 1

    def as_json(self) -> dict[str, list[float]]:
        """As recorded on the run row."""
        return {"edges": self.edges.tolist(), "shares": self.shares.round(6).tolist()}


@dataclass(frozen=True)
class CategoryShares:
    """A categorical feature's share per category the model knows, and of the others."""

    categories: dict[str, float]
    other: float

    def as_json(self) -> dict[str, Any]:
        """As recorded on the run row."""
        return {
            "categories": {name: round(share, 6) for name, share in self.categories.items()},
            "other": round(self.other, 6),
        }

    def against(self, current: CategoryShares) -> tuple[Floats, Floats]:
        """Both as vectors over the categories both models know, the rest in ``other``."""
        common = [name for name in self.categories if name in current.categories]
        expected = [self.categories[name] for name in common]
        actual = [current.categories[name] for name in common]
        expected.append(max(0.0, 1.0 - sum(expected)))
        actual.append(max(0.0, 1.0 - sum(actual)))
        return np.asarray(expected), np.asarray(actual)


@dataclass(frozen=True)
class Bins:
    """A run's recorded bins (``scoring_runs.feature_bins``)."""

    numeric: dict[str, NumericBins] = field(default_factory=dict)
    categorical: dict[str, CategoryShares] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The run row's ``feature_bins`` column."""
        return {
            "numeric": {name: bins.as_json() for name, bins in self.numeric.items()},
            "categorical": {name: shares.as_json() for name, shares in self.categorical.items()},
        }

    @classmethod
    def from_json(cls, recorded: dict[str, Any] | None) -> Bins:
        """The bins a run recorded (none for a run recorded before bins were)."""
        recorded = recorded or {}
        numeric = {
            name: NumericBins(
                np.asarray(item["edges"], dtype=np.float64),
                np.asarray(item["shares"], dtype=np.float64),
            )
            for name, item in (recorded.get("numeric") or {}).items()
        }
        categorical = {
            name: CategoryShares(dict(item["categories"]), float(item["other"]))
            for name, item in (recorded.get("categorical") or {}).items()
        }
        return cls(numeric, categorical)


@dataclass(frozen=True)
class Figures:
    """This run's drift against the reference: PSI per feature, and what was not checked."""

    reference_run_id: str | None
    psi: dict[str, float]
    unchecked: dict[str, str]  # feature -> why (names and reasons only, never values)


@dataclass(frozen=True)
class BinCounts:
    """A numeric input's counts over the reference's bins (``edges`` as the reference's)."""

    edges: Floats
    counts: Ints  # len(edges) + 1

    def as_json(self) -> dict[str, list[Any]]:
        """As a shard's row records it."""
        return {"edges": self.edges.tolist(), "counts": self.counts.tolist()}


@dataclass(frozen=True)
class CategoryCounts:
    """A categorical input's count per category the model knows, and of the others."""

    categories: dict[str, int]
    other: int

    def shares(self) -> CategoryShares | None:
        """As shares of the values counted; None when there was none (all NULL)."""
        total = sum(self.categories.values()) + self.other
        if total == 0:
            return None
        shares = {name: count / total for name, count in self.categories.items()}
        return CategoryShares(shares, self.other / total)

    def as_json(self) -> dict[str, Any]:
        """As a shard's row records it."""
        return {"categories": self.categories, "other": self.other}


@dataclass(frozen=True)
class Evidence:
    """A run's (or one shard's) drift evidence: its counts against the reference's bins and
    per model category, which sum exactly over shards, and its own sample's numeric bins.
    Statistics only: no sampled row, no value of any feature."""

    reference_run_id: str | None
    numeric: dict[str, BinCounts]  # the inputs the reference has bins for
    categorical: dict[str, CategoryCounts]  # the inputs the model records categories of
    sample: dict[str, NumericBins]  # this run's own bins, from its sample

    def bins(self) -> Bins:
        """The bins the run records, for the runs that follow it."""
        categorical = {
            name: shares
            for name, counted in self.categorical.items()
            if (shares := counted.shares()) is not None
        }
        return Bins(dict(self.sample), categorical)

    def figures(
        self, reference: Bins | None, numbers: Sequence[str], strings: Sequence[str]
    ) -> Figures:
        """PSI per input against the reference's bins (None: no reference run), and why an
        input was not checked."""
        if reference is None:
            return Figures(None, {}, {})
        found: dict[str, float] = {}
        unchecked: dict[str, str] = {}
        for name in numbers:
            counted = self.numeric.get(name)
            if counted is None:
                unchecked[name] = "the reference run recorded no bins for it"
            elif counted.counts.sum() == 0:
                unchecked[name] = "no value in this run (all NULL)"
            else:
                shares = counted.counts / counted.counts.sum()
                found[name] = round(psi(reference.numeric[name].shares, shares), 6)
        for name in strings:
            before = reference.categorical.get(name)
            counted_categories = self.categorical.get(name)
            now = None if counted_categories is None else counted_categories.shares()
            if counted_categories is None:
                unchecked[name] = "the model records no categories for it"
            elif before is None:
                unchecked[name] = "the reference run recorded no category shares for it"
            elif now is None:
                unchecked[name] = "no value in this run (all NULL)"
            else:
                found[name] = round(psi(*before.against(now)), 6)
        return Figures(self.reference_run_id, found, unchecked)

    def as_json(self) -> dict[str, Any]:
        """A shard's ``scoring_run_shards.feature_drift``."""
        return {
            "reference_run_id": self.reference_run_id,
            "numeric": {name: counted.as_json() for name, counted in self.numeric.items()},
            "categorical": {name: counted.as_json() for name, counted in self.categorical.items()},
            "sample": {name: bins.as_json() for name, bins in self.sample.items()},
        }

    @classmethod
    def from_json(cls, recorded: dict[str, Any]) -> Evidence:
        """The evidence a shard recorded."""
        numeric = {
            name: BinCounts(
                np.asarray(item["edges"], dtype=np.float64),
                np.asarray(item["counts"], dtype=np.int64),
            )
            for name, item in recorded["numeric"].items()
        }
        categorical = {
            name: CategoryCounts(
                {category: int(count) for category, count in item["categories"].items()},
                int(item["other"]),
            )
            for name, item in recorded["categorical"].items()
        }
        sample = Bins.from_json({"numeric": recorded["sample"]}).numeric
        return cls(recorded["reference_run_id"], numeric, categorical, sample)

    @classmethod
    def merge(cls, parts: Sequence[Evidence]) -> Evidence:
        """A sharded run's evidence from its shards' (by shard index, all binned against one
        reference): counts summed; per numeric input the reference's edges with the run's
        exact shares, or where the reference has none, the lowest-index shard's own bins."""
        first = parts[0]
        numeric = {
            name: BinCounts(counted.edges, np.sum([p.numeric[name].counts for p in parts], axis=0))
            for name, counted in first.numeric.items()
        }
        categorical = {
            name: CategoryCounts(
                {
                    category: sum(p.categorical[name].categories[category] for p in parts)
                    for category in counted.categories
                },
                sum(p.categorical[name].other for p in parts),
            )
            for name, counted in first.categorical.items()
        }
        sample: dict[str, NumericBins] = {}
        for part in parts:
            for name, bins in part.sample.items():
                sample.setdefault(name, bins)
        for name, counted in numeric.items():
            if total := int(counted.counts.sum()):
                sample[name] = NumericBins(counted.edges, counted.counts / total)
        return cls(first.reference_run_id, numeric, categorical, sample)


def quantile_bins(values: npt.NDArray[np.floating[Any]]) -> NumericBins | None:
    """Bins of ``values`` at the ``QUANTILES`` (NaN ignored), edges halfway between distinct
    neighbours, with each bin's share; None when there is no value."""
    ordered = np.sort(values[~np.isnan(values)]).astype(np.float64)
    if ordered.size == 0:
        return None
    at = np.ceil(QUANTILES * ordered.size).astype(np.int64) - 1
    below = np.unique(ordered[at])
    above_at = np.searchsorted(ordered, below, side="right")
    inside = above_at < ordered.size
    edges = (below[inside] + ordered[above_at[inside]]) / 2
    counts = np.diff(np.searchsorted(ordered, edges, side="left"), prepend=0, append=ordered.size)
    return NumericBins(edges, counts / ordered.size)


@dataclass
class _Sample:
    """A uniform sample of rows of a stream of matrices: the rows with the smallest random keys."""

    size: int
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    keys: Floats = field(default_factory=lambda: np.empty(0))
    rows: npt.NDArray[np.floating[Any]] | None = None

    def add(self, matrix: npt.NDArray[np.floating[Any]]) -> None:
        keys = np.asarray(self.rng.random(matrix.shape[0]), dtype=np.float64)
        if self.rows is not None and self.keys.size == self.size:
            wanted = keys < self.keys.max()  # only rows that would enter the sample
            keys, matrix = keys[wanted], matrix[wanted]
        if keys.size == 0:
            return
        keys = np.concatenate((self.keys, keys))
        rows = matrix if self.rows is None else np.concatenate((self.rows, matrix))
        if keys.size > self.size:
            kept = np.argpartition(keys, self.size - 1)[: self.size]
            keys, rows = keys[kept], rows[kept]
        self.keys, self.rows = keys, rows


_MIX = np.uint64(0x9E3779B97F4A7C15)
_FEW = 16  # up to this many categories, one comparison each beats searchsorted


def _hashes(values: npt.NDArray[np.bytes_], width: int) -> npt.NDArray[np.uint64]:
    """A 64-bit hash of each value, padded to ``width`` bytes (a multiple of 8): comparing
    these is ten times cheaper than comparing the bytes (a collision, about 1 in 2**64 per
    value, would count one value in another's bucket)."""
    words = values.astype(f"S{width}", copy=False).view("<u8").reshape(values.size, -1)
    hashed = words[:, 0].copy()
    for column in range(1, words.shape[1]):
        hashed *= _MIX
        hashed ^= words[:, column]
    return hashed


@dataclass
class _Categories:
    """Counts of one string input over the categories the model knows."""

    names: tuple[str, ...]
    known: npt.NDArray[np.bytes_]
    counts: npt.NDArray[np.int64]
    other: int = 0
    _hashed: dict[int, npt.NDArray[np.uint64]] = field(default_factory=dict)  # by width

    @classmethod
    def of(cls, names: tuple[str, ...]) -> _Categories:
        known = np.array([name.encode() for name in names], dtype=np.bytes_)
        return cls(names, known, np.zeros(len(names), dtype=np.int64))

    def add(self, texts: wire.Texts) -> None:
        width = -(-max(self.known.dtype.itemsize, texts.values.dtype.itemsize) // 8) * 8
        known = self._hashed.get(width)
        if known is None:
            known = self._hashed[width] = _hashes(self.known, width)
        values = _hashes(texts.values, width)
        if texts.null.any():
            values = values[~texts.null]
        if known.size <= _FEW:
            counts = np.array([np.count_nonzero(values == one) for one in known], np.int64)
        else:
            order = np.argsort(known)
            at = np.minimum(np.searchsorted(known[order], values), known.size - 1)
            hit = known[order][at] == values
            counts = np.zeros(known.size, np.int64)
            counts[order] = np.bincount(at[hit], minlength=known.size)
        self.counts += counts
        self.other += values.size - int(counts.sum())

    def counted(self) -> CategoryCounts:
        counts = {name: int(count) for name, count in zip(self.names, self.counts, strict=True)}
        return CategoryCounts(counts, self.other)


class Collector:
    """One run's drift evidence, folded in chunk by chunk (see the module doc)."""

    def __init__(
        self,
        plan: FeaturePlan,
        categories: dict[str, tuple[str, ...]],
        reference: Bins | None,
        reference_run_id: str | None,
    ) -> None:
        self._numbers = plan.numbers
        self._reference = reference
        self.reference_run_id = reference_run_id
        self._edges: list[tuple[int, str, list[float]]] = []
        if reference is not None:
            self._edges = [
                (index, name, [-np.inf, *reference.numeric[name].edges.tolist()])
                for index, name in enumerate(plan.numbers)
                if name in reference.numeric
            ]
        self._counts = {name: np.zeros(len(edges), np.int64) for _, name, edges in self._edges}
        self._sample = _Sample(SAMPLE_ROWS)
        self._categories = {
            name: _Categories.of(categories[name]) for name in plan.strings if name in categories
        }
        self._strings = plan.strings

    def add(self, chunk: Chunk) -> None:
        """Fold in one chunk's rows (those scored)."""
        numbers = chunk.numbers
        if numbers.shape[0] == 0:
            return
        for index, name, edges in self._edges:
            # A contiguous copy first: the rows' matrix is row-major, and each edge's pass over
            # a strided column would read the whole chunk again.
            column = np.ascontiguousarray(numbers[:, index])
            # One comparison per edge is cheaper than searchsorted + bincount over so few
            # edges; -inf first counts the values present (NaN is >= nothing).
            at_or_above = [np.count_nonzero(column >= edge) for edge in edges]
            self._counts[name] -= np.diff(at_or_above, append=0)
        if numbers.shape[1]:
            self._sample.add(numbers)
        for name, counter in self._categories.items():
            counter.add(chunk.strings[name])

    def evidence(self) -> Evidence:
        """What the run gathered: its counts and its sample's own bins."""
        sample: dict[str, NumericBins] = {}
        rows = self._sample.rows
        if rows is not None:
            for index, name in enumerate(self._numbers):
                found = quantile_bins(rows[:, index])
                if found is not None:
                    sample[name] = found
        return replace(self._counted(), sample=sample)

    def bins(self) -> Bins:
        """This run's own bins, to record for the runs that follow it."""
        return self.evidence().bins()

    def figures(self) -> Figures:
        """PSI per feature against the reference's bins, and why a feature was not."""
        return self._counted().figures(self._reference, self._numbers, self._strings)

    def _counted(self) -> Evidence:
        """The counts, without the sample's bins."""
        numeric = {
            name: BinCounts(np.asarray(edges[1:], dtype=np.float64), self._counts[name].copy())
            for _, name, edges in self._edges
        }
        categorical = {name: counter.counted() for name, counter in self._categories.items()}
        return Evidence(self.reference_run_id, numeric, categorical, {})
