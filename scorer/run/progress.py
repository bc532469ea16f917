"""What one run (or one shard of a sharded run) measures along the way, and the one summary
line that sums it up."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from scorer import logs
from scorer.config import RunSettings
from scorer.errors import ScorerError
from scorer.lineage.recorder import Lineage
from scorer.lineage.types import Outcome
from scorer.run.drift import Evidence as DriftEvidence
from scorer.run.gate import FeatureCounts, Verdict
from scorer.run.prepare import Timer
from scorer.run.record import Counts, Evidence
from scorer.run.statistics import ScoreStats, figures

log = structlog.get_logger("scorer")


@dataclass
class RunProgress:
    """One run's settings and everything it measures along the way."""

    settings: RunSettings
    timer: Timer = field(default_factory=Timer)
    counts: Counts = field(default_factory=Counts)
    stats: ScoreStats = field(default_factory=ScoreStats)
    feature_counts: FeatureCounts = field(default_factory=FeatureCounts)
    evidence: Evidence = field(default_factory=Evidence)
    verdict: Verdict | None = None
    drift: DriftEvidence | None = None  # per-feature drift: this run's, this shard's, or merged
    started: float = field(default_factory=time.perf_counter)
    run_started_at: datetime | None = None  # a sharded run's opening, once joined
    snapshot: str | None = None
    model_version: int | None = None
    outcome: str = "published"  # or "already_published": a rerun of a run id that succeeded
    ends_run: bool = True  # this process published or failed the run (a shard may not)
    lineage: Lineage | None = None  # MLflow record and OpenLineage events (best effort)
    pushed: dict[str, object] | None = None  # how the metrics push went (scorer.run.metrics)

    def seconds(self) -> float:
        """Wall time of the run so far: a sharded run's since its first shard opened it."""
        if self.run_started_at is not None:
            return (datetime.now(UTC) - self.run_started_at).total_seconds()
        return time.perf_counter() - self.started

    def figures(self) -> dict[str, float | None]:
        """The score statistics recorded on the run row and in the summary line."""
        probabilities = self.settings.score_kind == "probability"
        return figures(self.stats, probabilities, self.settings.label_threshold is not None)

    def lineage_outcome(self, failure: ScorerError | None = None) -> Outcome:
        """How the run (or this shard's part) ended, as the lineage records it."""
        counts = self.counts
        succeeded = failure is None
        return Outcome(
            succeeded=succeeded,
            finished_at=datetime.now(UTC),
            rows_read=counts.read,
            rows_scored=counts.read - counts.rejected if succeeded else 0,
            rows_rejected=counts.rejected,
            figures=self.figures() if succeeded else {},
            psi=None if self.verdict is None else self.verdict.psi(),
            timings=dict(self.timer.timings),
            error=None if failure is None else logs.redact(str(failure)),
            kind=None if failure is None else failure.kind,
        )

    def summary(self, event: str, failure: ScorerError | None = None) -> None:
        """The one canonical line that sums the run up."""
        elapsed = time.perf_counter() - self.started
        counts = self.counts
        fields: dict[str, Any] = {
            "status": "failed" if failure else "succeeded",
            "outcome": "failed" if failure else self.outcome,
            "snapshot": self.snapshot,
            "features": self.settings.features_table,
            "rows_read": counts.read,
            "rows_scored": self.stats.count,
            "rows_rejected": counts.rejected,
            "rows_rejected_by": dict(counts.rejected_by),
            **self.figures(),
            "threshold": self.settings.label_threshold,
            "seconds": round(elapsed, 3),
            "rows_per_s": round(counts.read / elapsed) if elapsed > 0 else None,
            "timings": self.timer.timings,
            "quality": None if self.verdict is None else self.verdict.as_json(),
            "lineage": None if self.lineage is None else self.lineage.summary(),
            "metrics": self.pushed,
        }
        if self.settings.shadow_of is not None:  # a shadow run (scorer.run.shadow)
            fields["shadow_of"] = self.settings.shadow_of
        if failure is None:
            log.info(event, **fields)
        else:
            kind, code = failure.kind, failure.exit_code
            log.error(event, error=str(failure), kind=kind, exit_code=code, **fields)
