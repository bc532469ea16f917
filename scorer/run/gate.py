"""The quality gate: a run's evidence, compared with the previous published run, before publish.

Every run records its evidence: a fixed histogram of its scores over [0, 1], and per feature
the share of NULL/NaN values (and, for strings, of empty ones). It is compared with the
latest published run whose scores mean the same: the same model and feature relation, the
same score kind and positive class. The checks: the population stability index of the
scores over the reference run's deciles, the row count as a ratio of the reference's, each
feature's increase in NULL share, and each feature's PSI against the reference's bins
(``scorer.run.drift``). Past a limit the run publishes nothing
(``QualityGateError``, exit 2) unless ``SCORER_QUALITY_OVERRIDE`` gives a reason; past a
warning level it logs a warning. A run with no such reference (a first run, or the first to
score another class or kind) passes and records why it had none.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from scorer.config import RunSettings
from scorer.postgres import db
from scorer.postgres.identifiers import quote_identifier
from scorer.run import drift

HISTOGRAM_BINS = 1000
"""``score_histogram`` counts the run's scores in [i/1000, (i+1)/1000), i = 0..999."""
FIRST_RUN = "the first published run of this model and relation"
_FLOOR = 1e-4  # shares below this count as this, so an empty bin does not make PSI infinite
Status = Literal["passed", "warning", "failed"]


@dataclass
class FeatureCounts:
    """Per-feature NULL/NaN and empty-string counts over the rows scored."""

    nulls: dict[str, int] = field(default_factory=dict)
    empties: dict[str, int] = field(default_factory=dict)

    def add(self, nulls: dict[str, int], empties: dict[str, int]) -> None:
        """Fold in one chunk's counts."""
        for name, count in nulls.items():
            self.nulls[name] = self.nulls.get(name, 0) + count
        for name, count in empties.items():
            self.empties[name] = self.empties.get(name, 0) + count

    def shares(self, rows: int) -> dict[str, dict[str, float]]:
        """``{feature: {"null_share": x[, "empty_share": y]}}`` over ``rows``."""
        out: dict[str, dict[str, float]] = {}
        for name, count in self.nulls.items():
            out[name] = {"null_share": count / rows if rows else 0.0}
            if name in self.empties:
                out[name]["empty_share"] = self.empties[name] / rows if rows else 0.0
        return out


@dataclass(frozen=True)
class Limits:
    """The gate's limits and the warning levels below them."""

    max_score_psi: float
    min_rows_ratio: float
    max_null_share_increase: float
    warn_score_psi: float = 0.1
    warn_rows_ratio: float = 0.95
    warn_null_share_increase: float = 0.05
    max_feature_psi: float = RunSettings.model_fields["max_feature_psi"].default
    warn_feature_psi: float = drift.WARN_PSI


@dataclass(frozen=True)
class Meaning:
    """What a run's scores are: runs are compared only when theirs are the same."""

    model_name: str
    relation: str  # the feature relation, as configured
    score_kind: str
    positive_class: str | None

    def describe(self) -> str:
        """``probabilities of class '1'``, ``raw scores``."""
        kind = "raw scores" if self.score_kind == "raw" else "probabilities"
        return kind if self.positive_class is None else f"{kind} of class {self.positive_class!r}"


@dataclass(frozen=True)
class Reference:
    """The latest published run whose scores mean the same as this run's."""

    run_id: str
    rows: int
    histogram: npt.NDArray[np.int64] | None
    feature_stats: dict[str, dict[str, float]]
    feature_bins: drift.Bins = field(default_factory=drift.Bins)


@dataclass(frozen=True)
class NoReference:
    """Why a run has no reference run: it passes unchecked, and records this."""

    reason: str


@dataclass(frozen=True)
class Check:
    """One comparison with the reference run."""

    check: str
    value: float
    limit: float
    warn: float
    status: Status

    def describe(self) -> str:
        """``score_psi 0.412 > 0.25``: the check with its figures."""
        sign = "<" if self.check == "rows_ratio" else ">"
        return f"{self.check} {self.value:.4g} {sign} {self.limit:g}"


@dataclass(frozen=True)
class Verdict:
    """What the gate found, as recorded in ``scoring_runs.quality``."""

    reference_run_id: str | None
    checks: tuple[Check, ...]
    override: str | None
    no_reference: str | None = None  # why there was no reference run
    drift_unchecked: dict[str, str] = field(default_factory=dict)  # feature -> why

    @property
    def failed(self) -> tuple[Check, ...]:
        """The checks over their limit."""
        return tuple(check for check in self.checks if check.status == "failed")

    @property
    def warnings(self) -> tuple[Check, ...]:
        """The checks over their warning level but within their limit."""
        return tuple(check for check in self.checks if check.status == "warning")

    @property
    def passed(self) -> bool:
        """Publish: no check failed, or an override let the run through."""
        return not self.failed or self.override is not None

    def psi(self) -> float | None:
        """The score PSI against the reference, if computed."""
        return next((c.value for c in self.checks if c.check == "score_psi"), None)

    def as_json(self) -> dict[str, Any]:
        """The run row's ``quality`` column."""
        recorded: dict[str, Any] = {
            "reference_run_id": self.reference_run_id,
            "checks": [check.__dict__ for check in self.checks],
            "passed": self.passed,
            "override": self.override,
        }
        if self.no_reference is not None:
            recorded["no_reference"] = self.no_reference
        if self.drift_unchecked:
            recorded["feature_psi_unchecked"] = self.drift_unchecked
        return recorded


def coarse_histogram(fine: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The recorded histogram (``HISTOGRAM_BINS`` bins over [0, 1]) from a finer one."""
    coarse: npt.NDArray[np.int64] = fine.reshape(HISTOGRAM_BINS, -1).sum(axis=1)
    return coarse


def previous(
    conn: db.Connection, schema: str, meaning: Meaning, run_id: str
) -> Reference | NoReference:
    """The latest published (or since pruned) run whose scores mean the same as ``meaning``,
    or why there is none: no published run of the model over the relation, or none that
    scored the same kind and class (a PSI against another class's scores means nothing)."""
    table = f"{quote_identifier(schema)}.scoring_runs"
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT run_id, rows_scored, score_histogram, feature_stats, score_kind,"
            f" positive_class, feature_bins FROM {table}"
            " WHERE model_name = %(model)s AND features_relation = %(relation)s"
            " AND run_id <> %(run_id)s AND status IN ('succeeded', 'pruned') AND NOT shadow"
            " ORDER BY (score_kind = %(kind)s"
            " AND positive_class IS NOT DISTINCT FROM %(positive)s) DESC, finished_at DESC"
            " LIMIT 1",
            {
                "model": meaning.model_name,
                "relation": meaning.relation,
                "run_id": run_id,
                "kind": meaning.score_kind,
                "positive": meaning.positive_class,
            },
        )
        row = cur.fetchone()
    if row is None:
        return NoReference(FIRST_RUN)
    latest = replace(meaning, score_kind=str(row[4]), positive_class=row[5])
    if latest != meaning:
        return NoReference(
            f"no published run of this model and relation scored {meaning.describe()}; the "
            f"latest, run {row[0]}, scored {latest.describe()}, which a comparison with this "
            "run's would not mean"
        )
    histogram = None if row[2] is None else np.asarray(row[2], dtype=np.int64)
    bins = drift.Bins.from_json(row[6])
    return Reference(str(row[0]), int(row[1] or 0), histogram, dict(row[3] or {}), bins)


@dataclass(frozen=True)
class Observed:
    """This run's evidence: rows scored, score histogram (probabilities), feature shares."""

    rows: int
    histogram: npt.NDArray[np.int64] | None
    feature_stats: dict[str, dict[str, float]]
    drift: drift.Figures | None = None  # PSI per feature against the reference's bins


def evaluate(
    reference: Reference | NoReference, observed: Observed, limits: Limits, override: str | None
) -> Verdict:
    """Compare this run's evidence with the reference run's."""
    rows, histogram, feature_stats = observed.rows, observed.histogram, observed.feature_stats
    if isinstance(reference, NoReference):
        return Verdict(None, (), override, reference.reason)
    checks = []
    if histogram is not None and reference.histogram is not None and reference.histogram.sum():
        value = psi(reference.histogram, histogram)
        checks.append(_check("score_psi", value, limits.max_score_psi, limits.warn_score_psi))
    if reference.rows:
        ratio = rows / reference.rows
        checks.append(
            _check("rows_ratio", ratio, limits.min_rows_ratio, limits.warn_rows_ratio, low=True)
        )
    for name, stats in feature_stats.items():
        before = reference.feature_stats.get(name, {}).get("null_share")
        if before is None:
            continue
        increase = stats["null_share"] - before
        checks.append(
            _check(
                f"null_share_increase:{name}",
                increase,
                limits.max_null_share_increase,
                limits.warn_null_share_increase,
            )
        )
    unchecked: dict[str, str] = {}
    if observed.drift is not None:
        checks += _drift_checks(observed.drift, limits)
        unchecked = observed.drift.unchecked
    return Verdict(reference.run_id, tuple(checks), override, drift_unchecked=unchecked)


def _drift_checks(figures: drift.Figures, limits: Limits) -> list[Check]:
    """``feature_psi:<name>`` per feature checked against the reference's bins."""
    return [
        _check(f"feature_psi:{name}", value, limits.max_feature_psi, limits.warn_feature_psi)
        for name, value in figures.psi.items()
    ]


def _check(name: str, value: float, limit: float, warn: float, low: bool = False) -> Check:
    over_limit = value < limit if low else value > limit
    over_warn = value < warn if low else value > warn
    status: Status = "failed" if over_limit else "warning" if over_warn else "passed"
    return Check(name, round(value, 6), limit, warn, status)


def psi(reference: npt.NDArray[np.int64], current: npt.NDArray[np.int64]) -> float:
    """Population stability index of ``current`` over the deciles of ``reference``.

    Both are histograms over the same ``HISTOGRAM_BINS`` bins of [0, 1].
    """
    cumulative = np.cumsum(reference) / reference.sum()
    edges = np.unique(np.searchsorted(cumulative, np.arange(1, 10) / 10) + 1)
    edges = edges[(edges > 0) & (edges < reference.size)]
    expected = np.add.reduceat(reference, np.concatenate(([0], edges))) / reference.sum()
    actual = np.add.reduceat(current, np.concatenate(([0], edges))) / max(current.sum(), 1)
    expected, actual = np.maximum(expected, _FLOOR), np.maximum(actual, _FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))
