"""``scorer evaluate``: realized performance of past runs, once their outcomes have landed.

Which runs: every published run (see ``_EVALUATED_STATUSES``, the one place that says so)
whose outcome window (snapshot, snapshot + ``SCORER_OUTCOME_HORIZON_DAYS``] has passed and
that has no evaluation at that horizon yet; ``--reevaluate`` repeats the evaluated ones too,
for labels that landed late. Each run is joined to ``SCORER_OUTCOMES_TABLE`` inside PostgreSQL
(``scorer.ops.realized``), and its figures go to ``scoring_run_evaluations`` (one row per run
and horizon, replaced by a re-evaluation), to the log, and as ``realized_*`` metrics (step:
the horizon in days) to the run's MLflow record when ``MLFLOW_TRACKING_URI`` is set (best
effort, as the record itself).

A run's window starts at its snapshot read as an ISO 8601 date or timestamp (a date is
midnight UTC, a timestamp without offset is UTC); a snapshot that is neither (a batch number,
a label) starts it when the run started scoring. ``SCORER_MIN_REALIZED_AUC`` fails the command
(exit 2, ``realized_performance``) after every run is recorded.
"""

from __future__ import annotations

import json
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta

import structlog

from scorer import logs
from scorer.config import EvaluateSettings
from scorer.errors import EXIT_OK, RealizedPerformanceError, SchemaMismatchError
from scorer.lineage import mlflow as mlflow_record
from scorer.ops import realized
from scorer.ops.realized import Figures, Outcomes, Run, Scope
from scorer.postgres import db, privileges, schema
from scorer.postgres.identifiers import quote_identifier

log = structlog.get_logger("scorer")

_EVALUATED_STATUSES = ("succeeded",)
"""The runs ``evaluate`` judges: published ones (a pruned run has no predictions left)."""


def main(settings: EvaluateSettings, reevaluate: bool) -> int:
    """Evaluate every due run; return the exit code (or raise, e.g. below the minimum AUC)."""
    started = time.perf_counter()
    target = settings.target_schema
    url = settings.database_url.get_secret_value()
    horizon = settings.outcome_horizon_days or 0
    evaluated: list[tuple[Run, Figures]] = []
    with closing(db.connect(url)) as conn, db.database_errors("evaluating"):
        with db.transaction(conn):
            privileges.require(conn, target, "evaluate", settings.outcomes)
            schema.require_migrated(conn, target)
        outcomes = realized.inspect(
            conn,
            settings.outcomes,
            settings.outcome_entity_column or "",
            settings.outcome_column or "",
            settings.outcome_time_column or "",
        )
        runs = due(conn, target, horizon, settings.model_name, reevaluate)
        _require_entity_types(runs, outcomes)
        scope = Scope(target, outcomes, horizon, settings.compare_top_share)
        for run in runs:
            figures = evaluate(conn, scope, run)
            if figures is not None:
                evaluated.append((run, figures))
    for run, figures in evaluated:
        _record_in_mlflow(settings.tracking_uri, run, figures, horizon)
    below = _below(evaluated, settings.min_realized_auc)
    log.info(
        "evaluate.done",
        schema=target,
        outcomes=str(settings.outcomes),
        horizon_days=horizon,
        reevaluate=reevaluate,
        evaluated=len(evaluated),
        below_min_auc=len(below),
        seconds=round(time.perf_counter() - started, 3),
    )
    if below:
        listed = ", ".join(f"{run_id} ({auc:.4f})" for run_id, auc in below)
        raise RealizedPerformanceError(
            f"realized ROC AUC below SCORER_MIN_REALIZED_AUC={settings.min_realized_auc} at"
            f" {horizon} days: {listed}; every figure is recorded (scorer show RUN_ID)"
        )
    return EXIT_OK


def due(
    conn: db.Connection, target: str, horizon: int, model: str | None, reevaluate: bool
) -> list[Run]:
    """The runs to evaluate now, oldest first: published, past their window, not evaluated at
    ``horizon`` (unless ``reevaluate``)."""
    s = quote_identifier(target)
    with db.transaction(conn), conn.cursor() as cur:
        cur.execute(
            "SELECT r.run_id, r.model_name, r.entity_type, r.score_kind, r.rows_scored,"
            " r.mlflow_record_run_id, r.snapshot, r.started_at, now()"
            f" FROM {s}.scoring_runs AS r"
            " WHERE r.status = ANY(%(statuses)s)"
            "  AND (%(model)s::text IS NULL OR r.model_name = %(model)s::text)"
            "  AND (%(reevaluate)s OR NOT EXISTS ("
            f"   SELECT FROM {s}.scoring_run_evaluations AS e"
            "    WHERE e.run_id = r.run_id AND e.horizon_days = %(horizon)s))"
            " ORDER BY r.started_at, r.run_id",
            {
                "statuses": list(_EVALUATED_STATUSES),
                "model": model,
                "reevaluate": reevaluate,
                "horizon": horizon,
            },
        )
        rows = cur.fetchall()
    found = []
    for run_id, model_name, kind, score_kind, scored, record, snapshot, started_at, now in rows:
        start, window_from = window_start(str(snapshot), started_at)
        end = start + timedelta(days=horizon)
        if end <= now:
            found.append(
                Run(
                    run_id, model_name, kind, score_kind == "probability", int(scored or 0),
                    record, (start, end), window_from,
                )
            )  # fmt: skip
    return found


def window_start(snapshot: str, started_at: datetime) -> tuple[datetime, str]:
    """Where a run's outcome window starts: its snapshot as a time, else its start."""
    try:
        moment = datetime.fromisoformat(snapshot)
    except ValueError:
        return started_at, "started_at"
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)), "snapshot"


def _require_entity_types(runs: list[Run], outcomes: Outcomes) -> None:
    """Every due run's ids must be of the outcome entity column's kind, or nothing is done."""
    other = sorted({run.entity_type for run in runs} - {outcomes.entity_kind})
    if other:
        count = sum(run.entity_type in other for run in runs)
        raise SchemaMismatchError(
            f"SCORER_OUTCOME_ENTITY_COLUMN: {outcomes.relation}.{outcomes.entity_column} joins"
            f" {outcomes.entity_kind} ids, but {count} due run(s) have {', '.join(other)} ids;"
            " give an outcome column of their type, or evaluate one model (SCORER_MODEL_NAME)"
        )


def evaluate(conn: db.Connection, scope: Scope, run: Run) -> Figures | None:
    """Compute and store one run's figures, in one transaction; ``None`` if it was pruned
    meanwhile (its partition no longer holds its rows)."""
    with db.transaction(conn), conn.cursor() as cur:
        cur.execute("SET LOCAL TimeZone = 'UTC'")  # a date outcome is midnight UTC
        figures = realized.figures(cur, scope, run)
        if figures.rows_scored != run.rows_scored:
            log.warning(
                "evaluate.skipped",
                run_id=run.run_id,
                detail="its partition no longer holds its rows (pruned meanwhile)",
            )
            return None
        _store(cur, scope, run, figures)
    log.info(
        "evaluate.evaluated",
        run_id=run.run_id,
        model_name=run.model_name,
        horizon_days=scope.horizon_days,
        window_start=run.window[0].isoformat(),
        window_end=run.window[1].isoformat(),
        window_from=run.window_from,
        rows_scored=figures.rows_scored,
        rows_labelled=figures.rows_labelled,
        **{key.removeprefix("realized_"): value for key, value in figures.metrics().items()},
    )
    return figures


def _store(cur: db.Cursor, scope: Scope, run: Run, figures: Figures) -> None:
    values = {
        "run_id": run.run_id,
        "horizon_days": scope.horizon_days,
        "outcomes_relation": str(scope.outcomes.relation),
        "window_start": run.window[0],
        "window_end": run.window[1],
        "rows_scored": figures.rows_scored,
        "rows_labelled": figures.rows_labelled,
        "positives": figures.positives,
        "label_coverage": figures.label_coverage,
        "base_rate": figures.base_rate,
        "roc_auc": figures.roc_auc,
        "average_precision": figures.average_precision,
        "top_share": figures.top_share,
        "top_rows": figures.top_rows,
        "precision_top": figures.precision_top,
        "lift_top": figures.lift_top,
        "brier": figures.brier,
        "calibration": None if figures.calibration is None else json.dumps(figures.calibration),
    }
    names = ", ".join(values)
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in values if name != "run_id")
    cur.execute(
        f"INSERT INTO {quote_identifier(scope.target)}.scoring_run_evaluations"
        f" (evaluated_at, {names}) VALUES (now(), {', '.join(f'%({n})s' for n in values)})"
        f" ON CONFLICT (run_id, horizon_days) DO UPDATE SET evaluated_at = now(), {updates}",
        values,
    )


def _record_in_mlflow(tracking_uri: str | None, run: Run, figures: Figures, horizon: int) -> None:
    """The figures as metrics of the run's MLflow record; a failure only warns."""
    if tracking_uri is None or run.mlflow_record_run_id is None:
        return
    try:
        mlflow_record.log_realized(
            tracking_uri, run.mlflow_record_run_id, figures.metrics(), step=horizon
        )
    except mlflow_record.RecordError as exc:
        log.warning(
            "evaluate.mlflow_failed",
            run_id=run.run_id,
            mlflow_run_id=run.mlflow_record_run_id,
            error=logs.redact(str(exc)),
        )


def _below(evaluated: list[tuple[Run, Figures]], minimum: float | None) -> list[tuple[str, float]]:
    if minimum is None:
        return []
    return [
        (run.run_id, figures.roc_auc)
        for run, figures in evaluated
        if figures.roc_auc is not None and figures.roc_auc < minimum
    ]
