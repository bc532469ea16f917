"""The ``scoring_runs`` row: lock, open, publish or fail one run."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg2

from scorer import __version__
from scorer.errors import LockBusyError
from scorer.postgres import db, locks
from scorer.postgres.identifiers import quote_identifier

if TYPE_CHECKING:
    from scorer.config import RunSettings
    from scorer.io.features import FeaturePlan
    from scorer.model.flavors import LoadedModel
    from scorer.model.registry import ResolvedModel

_SCHEDULED_WINDOW_SECONDS = 86_400


def wait_for_run_lock(
    cur: db.Cursor, settings: RunSettings, model_name: str, snapshot: str, *, shared: bool
) -> None:
    """Take the (model, snapshot) advisory lock for the session, retrying each second for
    ``SCORER_LOCK_WAIT_SECONDS``; ``shared`` for the shards of one run, exclusive otherwise.
    Raises ``LockBusyError`` when it stays taken."""
    key = locks.run(settings.target_schema, model_name, snapshot)
    deadline = time.monotonic() + settings.lock_wait_seconds
    while True:
        if locks.try_acquire(cur, key, shared=shared):
            return
        if time.monotonic() >= deadline:
            raise LockBusyError(
                f"another run is scoring {model_name} for snapshot {snapshot};"
                f" waited {settings.lock_wait_seconds:g}s"
            )
        time.sleep(1.0)


def trigger_of(settings: RunSettings, now: datetime | None = None) -> str:
    """``scheduled`` for a Job the CronJob made, ``manual`` for other Jobs, ``local`` outside."""
    if settings.trigger is not None:
        return settings.trigger
    job, cronjob = settings.k8s_job, settings.k8s_cronjob
    if not job:
        return "local"
    if cronjob and job.startswith(f"{cronjob}-"):
        # The CronJob controller names Jobs <cronjob>-<scheduled time in minutes since epoch>.
        suffix = job.removeprefix(f"{cronjob}-")
        current = (now or datetime.now(UTC)).timestamp()
        if suffix.isdigit() and abs(int(suffix) * 60 - current) < _SCHEDULED_WINDOW_SECONDS:
            return "scheduled"
    return "manual"


@dataclass
class Counts:
    """Rows read and rejected so far, and why they were rejected (scored: ``ScoreStats``)."""

    read: int = 0
    rejected_by: Counter[str] = field(default_factory=Counter)

    @property
    def rejected(self) -> int:
        """Rows read and not scored."""
        return sum(self.rejected_by.values())


class RunRecord:
    """One run's ``scoring_runs`` row, written on the writer connection.

    ``lock``, ``status`` and ``open`` are session work (the caller runs them in autocommit:
    the row must say ``running`` while the run scores); ``publish`` runs inside the caller's
    publishing transaction; ``fail`` commits on its own after that transaction rolled back.
    """

    def __init__(
        self, conn: db.Connection, settings: RunSettings, resolved: ResolvedModel, plan: FeaturePlan
    ) -> None:
        self._conn = conn
        self._settings = settings
        self._resolved = resolved
        self._plan = plan
        self.snapshot = plan.snapshot.label
        self._table = f"{quote_identifier(settings.target_schema)}.scoring_runs"

    def lock(self) -> None:
        """Take the (model, snapshot) advisory lock for the session, or raise ``LockBusyError``."""
        with self._conn.cursor() as cur:
            wait_for_run_lock(cur, self._settings, self._resolved.name, self.snapshot, shared=False)

    def status(self) -> str | None:
        """This run id's current status, if it has a row."""
        with self._conn.cursor() as cur:
            cur.execute(
                f"SELECT status FROM {self._table} WHERE run_id = %s", (self._settings.run_id,)
            )
            row = cur.fetchone()
        return None if row is None else str(row[0])

    def open(self, model: LoadedModel, started_at: datetime) -> str:
        """Insert (or, on retry, reset) the row as ``running``, committed at once.

        Returns the trigger recorded for the run.
        """
        s, m = self._settings, self._resolved
        trigger = trigger_of(s, started_at)
        values = {
            "run_id": s.run_id,
            "status": "running",
            "model_name": m.name,
            "model_selector": m.selector,
            "model_version": m.version,
            "mlflow_run_id": m.mlflow_run_id,
            "model_source": m.source,
            "model_id": m.model_id,
            "model_flavor": model.flavor,
            "model_signature": json.dumps(model.signature),
            "threshold": s.label_threshold,
            "snapshot": self.snapshot,
            "snapshot_column": self._plan.snapshot.column,
            "snapshot_order": self._plan.snapshot.order,
            "entity_type": self._plan.entity_kind,
            "score_kind": model.score_kind,
            "score_method": model.method,
            "positive_class": model.positive_class,
            "features_relation": s.features_table,
            "entity_column": s.entity_column,
            "reasons": s.reasons or None,
            "trigger": trigger,
            "started_at": started_at,
            "scorer_version": __version__,
            "k8s_namespace": s.k8s_namespace,
            "k8s_pod": s.k8s_pod,
            "k8s_node": s.k8s_node,
            "k8s_job": s.k8s_job,
            "k8s_cronjob": s.k8s_cronjob,
            "image": s.image,
            "shadow": s.shadow_of is not None,  # never in a consumer view (scorer.run.shadow)
            "shadow_of": s.shadow_of,
        }
        names = ", ".join(values)
        params = ", ".join(f"%({name})s" for name in values)
        reset = ", ".join(f"{name} = EXCLUDED.{name}" for name in values if name != "run_id")
        with self._conn.cursor() as cur:
            cur.execute(
                f"INSERT INTO {self._table} ({names}) VALUES ({params}) "
                f"ON CONFLICT (run_id) DO UPDATE SET {reset},"
                f" attempts = {self._table}.attempts + 1,"
                " finished_at = NULL, error = NULL, rows_read = NULL, rows_scored = NULL,"
                " rows_rejected = NULL, rows_rejected_by = NULL, timings = NULL",
                values,
            )
        return trigger

    def publish(
        self,
        counts: Counts,
        figures: dict[str, float | None],
        timings: dict[str, float],
        evidence: Evidence,
    ) -> datetime:
        """Mark the run succeeded, inside the transaction that attaches its partition."""
        finished = datetime.now(UTC)
        scored = counts.read - counts.rejected
        with self._conn.cursor() as cur:
            cur.execute(
                f"UPDATE {self._table} SET status = 'succeeded', finished_at = %(finished)s,"
                " timings = %(timings)s, rows_read = %(read)s, rows_scored = %(scored)s,"
                " rows_rejected = %(rejected)s, rows_rejected_by = %(rejected_by)s,"
                " score_mean = %(score_mean)s, score_p50 = %(score_p50)s,"
                " score_p90 = %(score_p90)s, share_above_threshold = %(share_above_threshold)s,"
                f" {EVIDENCE} WHERE run_id = %(run_id)s",
                {
                    "finished": finished,
                    "timings": json.dumps(timings),
                    "read": counts.read,
                    "scored": scored,
                    "rejected": counts.rejected,
                    "rejected_by": json.dumps(dict(counts.rejected_by)),
                    "run_id": self._settings.run_id,
                    **figures,
                    **evidence.columns(),
                },
            )
        return finished

    def fail(
        self, error: str, counts: Counts, timings: dict[str, float], evidence: Evidence
    ) -> None:
        """Record the failure on the run row (best effort: the database may be gone).

        The caller's transaction has rolled this attempt's rows back already.
        """
        if self._conn.closed:
            return  # the row stays 'running' and the retry resets it
        try:
            with db.autocommit(self._conn), self._conn.cursor() as cur:
                cur.execute(
                    f"UPDATE {self._table} SET status = 'failed', finished_at = now(),"
                    " error = %(error)s, timings = %(timings)s, rows_read = %(read)s,"
                    " rows_scored = 0, rows_rejected = %(rejected)s,"
                    f" rows_rejected_by = %(rejected_by)s, {EVIDENCE} WHERE run_id = %(run_id)s",
                    {
                        "error": error,
                        "timings": json.dumps(timings),
                        "read": counts.read,
                        "rejected": counts.rejected,
                        "rejected_by": json.dumps(dict(counts.rejected_by)),
                        "run_id": self._settings.run_id,
                        **evidence.columns(),
                    },
                )
        except psycopg2.Error:
            pass  # the database went away meanwhile: the retry resets the row


@dataclass
class Evidence:
    """What the quality gate saw, recorded on the run row whether it published or not."""

    histogram: list[int] | None = None
    feature_stats: dict[str, dict[str, float]] | None = None
    quality: dict[str, object] | None = None
    override: str | None = None
    feature_bins: dict[str, Any] | None = None  # scorer.run.drift: bin edges and shares

    def columns(self) -> dict[str, str | None]:
        """The run row's evidence columns, as query parameters."""
        return {
            "score_histogram": None if self.histogram is None else json.dumps(self.histogram),
            "feature_stats": None if self.feature_stats is None else json.dumps(self.feature_stats),
            "quality": None if self.quality is None else json.dumps(self.quality),
            "quality_override": self.override,
            "feature_bins": None if self.feature_bins is None else json.dumps(self.feature_bins),
        }


EVIDENCE = (
    "score_histogram = %(score_histogram)s, feature_stats = %(feature_stats)s,"
    " quality = %(quality)s, quality_override = %(quality_override)s,"
    " feature_bins = %(feature_bins)s"
)
"""The run row's evidence columns set from ``Evidence.columns()`` (named query parameters)."""


def run_status(cur: db.Cursor, schema: str, run_id: str) -> tuple[str, str | None] | None:
    """A run row's status and error, if the row exists."""
    cur.execute(
        f"SELECT status, error FROM {quote_identifier(schema)}.scoring_runs WHERE run_id = %s",
        (run_id,),
    )
    row = cur.fetchone()
    return None if row is None else (str(row[0]), row[1])
