"""The ``scoring_runs`` row: lock, open, publish or fail one run."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg2

from scorer import __version__
from scorer.errors import LockBusyError
from scorer.identifiers import quote_identifier

if TYPE_CHECKING:
    from scorer.config import RunSettings
    from scorer.registry import LoadedModel, ResolvedModel
    from scorer.stats import ScoreStats

_SCHEDULED_WINDOW_SECONDS = 86_400


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
    """Rows read, scored and rejected so far."""

    read: int = 0
    scored: int = 0
    rejected: int = 0


class RunRecord:
    """Owns the writer connection's view of one run's ``scoring_runs`` row."""

    def __init__(self, conn: Any, settings: RunSettings, resolved: ResolvedModel) -> None:
        self._conn = conn
        self._settings = settings
        self._resolved = resolved
        self._table = f"{quote_identifier(settings.target_schema)}.scoring_runs"

    def lock(self) -> None:
        """Take the (model, snapshot) advisory lock for the session, or raise ``LockBusyError``."""
        key = (
            f"scorer:{self._settings.target_schema}:{self._resolved.name}:{self._settings.snapshot}"
        )
        deadline = time.monotonic() + self._settings.lock_wait_seconds
        self._conn.autocommit = True
        with self._conn.cursor() as cur:
            while True:
                cur.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,))
                if cur.fetchone()[0]:
                    return
                if time.monotonic() >= deadline:
                    raise LockBusyError(
                        f"another run is scoring {self._resolved.name} for snapshot "
                        f"{self._settings.snapshot}; waited {self._settings.lock_wait_seconds:g}s"
                    )
                time.sleep(1.0)

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
            "snapshot": s.snapshot,
            "features_relation": s.features_table,
            "trigger": trigger,
            "started_at": started_at,
            "scorer_version": __version__,
            "k8s_namespace": s.k8s_namespace,
            "k8s_pod": s.k8s_pod,
            "k8s_node": s.k8s_node,
            "k8s_job": s.k8s_job,
            "k8s_cronjob": s.k8s_cronjob,
            "image": s.image,
        }
        names = ", ".join(values)
        params = ", ".join(f"%({name})s" for name in values)
        reset = ", ".join(f"{name} = EXCLUDED.{name}" for name in values if name != "run_id")
        self._conn.autocommit = True
        with self._conn.cursor() as cur:
            cur.execute(
                f"INSERT INTO {self._table} ({names}) VALUES ({params}) "
                f"ON CONFLICT (run_id) DO UPDATE SET {reset},"
                f" attempts = {self._table}.attempts + 1,"
                " finished_at = NULL, error = NULL, rows_read = NULL, rows_scored = NULL,"
                " rows_rejected = NULL, timings = NULL",
                values,
            )
        self._conn.autocommit = False
        return trigger

    def publish(self, counts: Counts, stats: ScoreStats, timings: dict[str, float]) -> datetime:
        """Mark the run succeeded and commit: its predictions become visible together."""
        finished = datetime.now(UTC)
        with self._conn.cursor() as cur:
            cur.execute(
                f"UPDATE {self._table} SET status = 'succeeded', finished_at = %s, timings = %s,"
                " rows_read = %s, rows_scored = %s, rows_rejected = %s, score_mean = %s,"
                " score_p50 = %s, score_p90 = %s, share_above_threshold = %s WHERE run_id = %s",
                (
                    finished,
                    json.dumps(timings),
                    counts.read,
                    counts.scored,
                    counts.rejected,
                    stats.mean,
                    stats.quantile(0.5),
                    stats.quantile(0.9),
                    stats.share_above,
                    self._settings.run_id,
                ),
            )
        self._conn.commit()
        return finished

    def fail(self, error: str, counts: Counts, timings: dict[str, float]) -> None:
        """Roll back this attempt's rows and record the failure (best effort)."""
        try:
            self._conn.rollback()
            self._conn.autocommit = True
            with self._conn.cursor() as cur:
                cur.execute(
                    f"UPDATE {self._table} SET status = 'failed', finished_at = now(), error = %s,"
                    " timings = %s, rows_read = %s, rows_scored = 0, rows_rejected = %s"
                    " WHERE run_id = %s",
                    (
                        error,
                        json.dumps(timings),
                        counts.read,
                        counts.rejected,
                        self._settings.run_id,
                    ),
                )
        except psycopg2.Error:
            pass  # the database is gone: the row stays 'running' and the retry resets it
