"""``scorer backfill``: score older snapshots, each as a run of its own, resumably.

Each snapshot gets the run id ``<run id>-<snapshot>``, so a retried backfill Job reuses
its run ids. A snapshot the same model version has already published is skipped (and the
skip is logged), so a backfill stopped half-way picks up where it stopped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import closing

import structlog

from scorer.config import RunSettings
from scorer.errors import ConfigError
from scorer.io import features
from scorer.model import registry
from scorer.postgres import db, privileges
from scorer.postgres.identifiers import quote_identifier
from scorer.run import shadow

log = structlog.get_logger("scorer")
_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]+")


def run_id_for(base: str, snapshot: str) -> str:
    """The run id of one snapshot of a backfill (stable, within the 128-character limit)."""
    return f"{base[:80]}-{_UNSAFE.sub('-', snapshot).strip('-')[:47]}"


def main(settings: RunSettings, between: tuple[str, str] | None, listed: Sequence[str]) -> int:
    """Score each snapshot ``between`` two values (inclusive) or ``listed``; return the exit code.

    Stops at the first snapshot that fails, with its exit code; rerun to resume.
    """
    if settings.sharded:
        raise ConfigError(
            "backfill scores its snapshots one run after another in one process; it does not"
            " shard (unset SCORER_SHARDS, or run each snapshot as a sharded `run` with"
            " SCORER_SNAPSHOT)"
        )
    source = features.Source(settings.features, settings.entity_column, settings.snapshot_column)
    url = settings.database_url.get_secret_value()
    resolved = registry.resolve(settings)
    with closing(db.connect(url)) as conn, db.transaction(conn):
        privileges.require(conn, settings.target_schema, "run", settings.features)
        labels = features.snapshots(conn, source, between, listed)
        published = _published(conn, settings, resolved.version)
    log.info("backfill.planned", snapshots=labels, model_version=resolved.version)
    done = 0
    for label in labels:
        if label in published:
            log.info("backfill.skipped", snapshot=label, reason="already published by this version")
            continue
        run_settings = settings.model_copy(
            update={"snapshot": label, "run_id": run_id_for(settings.run_id, label)}
        )
        structlog.contextvars.bind_contextvars(run_id=run_settings.run_id)
        code = shadow.run(run_settings)  # it has logged the snapshot's summary line(s)
        if code:
            return code
        done += 1
    structlog.contextvars.bind_contextvars(run_id=settings.run_id)
    log.info("backfill.done", scored=done, skipped=len(labels) - done, snapshots=len(labels))
    return 0


def _published(conn: db.Connection, settings: RunSettings, version: int) -> set[str]:
    table = f"{quote_identifier(settings.target_schema)}.scoring_runs"
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT snapshot FROM {table} WHERE status = 'succeeded' AND NOT shadow"
            " AND model_name = %s"
            " AND model_version = %s AND features_relation = %s",
            (settings.model_name, version, settings.features_table),
        )
        return {str(row[0]) for row in cur.fetchall()}
