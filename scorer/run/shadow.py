"""A challenger in the champion's shadow (``SCORER_SHADOW_ALIAS`` or ``SCORER_SHADOW_VERSION``).

After the champion's run has published, the challenger scores the same snapshot as a run of
its own (the run id ``<run id>-shadow``), through the same run machinery, so it has the same
lineage and evidence. Its row says ``shadow`` (and ``shadow_of``, the champion's run id), so
no consumer view shows it (migration `shadow_runs`). Then ``scorer.run.compare`` compares the two
inside PostgreSQL, and the comparison goes on both run rows, on both MLflow records and in
the summary line, ``shadow.succeeded`` or ``shadow.failed``, which ends the process.

The exit code is the champion's: a shadow that fails (anything, even a SIGTERM) is named in
the summary line, and the process still exits 0. A champion that fails leaves no shadow run.

A shadow run differs from its champion's run in what is scored (the challenger) and in what
its run does not do: it passes the quality gate whatever it finds (the gate's figures stay
on its row as evidence, with the override ``shadow of run <champion>``), it pushes no metrics
(the champion's stay the model's), and it is never published to readers.
"""

from __future__ import annotations

import gc
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import structlog

from scorer import logs
from scorer.config import RunSettings
from scorer.errors import ScorerError
from scorer.failures import classify
from scorer.lineage import mlflow
from scorer.postgres import db
from scorer.postgres.identifiers import quote_identifier
from scorer.run import compare, runner
from scorer.run.challenger import settings_for, shadow_run_id
from scorer.run.record import run_status

log = structlog.get_logger("scorer")


@dataclass
class Shadow:
    """How the shadow run went, as the summary line says."""

    run_id: str
    selector: str
    outcome: str = "not_started"  # scored | already_scored | failed | not_started
    exit_code: int | None = None
    error: str | None = None
    kind: str | None = None
    comparison: compare.Comparison | None = None
    comparison_error: str | None = None
    mlflow: str | None = None  # recorded | missing | disabled (the comparison's metrics)

    def failed(self, failure: ScorerError, during: str) -> None:
        """Name a failure of the shadow (or of its comparison)."""
        message = logs.redact(f"{during}: {failure}")
        if self.outcome in ("scored", "already_scored"):
            self.comparison_error = message
        else:
            self.outcome, self.error, self.kind = "failed", message, failure.kind
            self.exit_code = self.exit_code or failure.exit_code

    @property
    def ok(self) -> bool:
        """The shadow scored and was compared."""
        return self.comparison is not None

    def summary(self) -> dict[str, Any]:
        """The summary line's ``shadow`` field."""
        return {
            "run_id": self.run_id,
            "selector": self.selector,
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "kind": self.kind,
            "error": self.error,
            "comparison": None if self.comparison is None else self.comparison.as_json(),
            "comparison_error": self.comparison_error,
            "mlflow_record": self.mlflow,
        }


def run(settings: RunSettings) -> int:
    """Score and publish the champion (``runner.run``); then, when a challenger is set, its
    shadow run and the comparison. Returns the champion's exit code."""
    code = runner.run(settings)
    selector = settings.shadow_selector
    if selector is None:
        return code
    if code != 0:
        log.info("shadow.skipped", shadow_selector=selector, reason="the champion's run failed")
        return code
    shadow = Shadow(shadow_run_id(settings.run_id), selector)
    try:
        _score_and_compare(settings, shadow)
    except BaseException as exc:  # a shadow never fails the champion, not even on SIGTERM
        shadow.failed(classify(exc), "shadow")
    finally:
        structlog.contextvars.unbind_contextvars("model_version")
        structlog.contextvars.bind_contextvars(run_id=settings.run_id)
    event = "shadow.succeeded" if shadow.ok else "shadow.failed"
    (log.info if shadow.ok else log.warning)(event, exit_code=code, shadow=shadow.summary())
    return code


def _score_and_compare(settings: RunSettings, shadow: Shadow) -> None:
    """The shadow run over the champion's snapshot, then the comparison, recorded."""
    url = settings.database_url.get_secret_value()
    target = settings.target_schema
    with (
        closing(db.connect(url)) as conn,
        db.database_errors("reading the champion's run"),
        db.transaction(conn),
        conn.cursor() as cur,
    ):
        snapshot = compare.facts(cur, target, settings.run_id).snapshot
        before = run_status(cur, target, shadow.run_id)
    challenger = settings_for(settings, snapshot)
    structlog.contextvars.bind_contextvars(run_id=shadow.run_id)
    gc.unfreeze()  # the champion's model, frozen by its run, can go before the challenger loads
    gc.collect()
    shadow.exit_code = runner.run(challenger)  # logs the shadow run's own summary line
    structlog.contextvars.bind_contextvars(run_id=settings.run_id)
    with closing(db.connect(url)) as conn, db.database_errors("comparing the shadow run"):
        with db.transaction(conn), conn.cursor() as cur:
            status, error = run_status(cur, target, shadow.run_id) or (None, None)
        if status != "succeeded" or shadow.exit_code:
            shadow.outcome = "failed"
            shadow.error = error or "it failed before its run row opened: its run.failed line"
            return
        scored_before = before is not None and before[0] == "succeeded"
        shadow.outcome = "already_scored" if scored_before else "scored"
        comparison = compare.between(
            conn, target, settings.run_id, shadow.run_id, settings.compare_top_share
        )
        compare.record(conn, target, comparison)
        shadow.comparison = comparison
        with db.transaction(conn), conn.cursor() as cur:
            records = _mlflow_records(cur, target, settings.run_id, shadow.run_id)
    shadow.mlflow = _record_in_mlflow(settings, comparison, records)


def _mlflow_records(cur: db.Cursor, target: str, *run_ids: str) -> dict[str, str]:
    """The MLflow record of each run that has one."""
    cur.execute(
        f"SELECT run_id, mlflow_record_run_id FROM {quote_identifier(target)}.scoring_runs"
        " WHERE run_id = ANY(%s) AND mlflow_record_run_id IS NOT NULL",
        (list(run_ids),),
    )
    return {str(run_id): str(record) for run_id, record in cur.fetchall()}


def _record_in_mlflow(
    settings: RunSettings, comparison: compare.Comparison, records: dict[str, str]
) -> str:
    """The comparison on both runs' MLflow records (``scorer.lineage.mlflow``), best effort:
    ``recorded``, ``missing`` (warned) or ``disabled``."""
    if not settings.mlflow_record:
        return "disabled"
    done = 0
    for run_id, other in (
        (comparison.run_a, comparison.run_b),
        (comparison.run_b, comparison.run_a),
    ):
        record = records.get(run_id)
        if record is None:
            continue
        tags = {"scorer.compared_with": other}
        if run_id == comparison.run_b:
            tags["scorer.shadow_of"] = comparison.run_a
        try:
            mlflow.record_comparison(settings.tracking_uri, record, comparison.figures(), tags)
        except mlflow.RecordError as exc:  # MLflow down is a warning, as for every record
            error = logs.redact(str(exc))[:2000]
            log.warning("mlflow.comparison_missing", mlflow_record_run_id=record, error=error)
            continue
        done += 1
    return "recorded" if done == 2 else "missing"
