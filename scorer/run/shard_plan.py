"""One run over many pods: the split, the run's recorded resolution, and who may score.

A run of ``SCORER_SHARDS=n`` is scored by n processes (an Indexed Job's pods) under one run
id. The first shard to open the run records, on the run row, everything its result depends
on: the model version it resolved, the snapshot, the threshold, the shard count, the split
and the settings that change what is scored or published. Every later shard and every retry
reads those instead of resolving again, so an alias moved in between changes nothing.

**The split** is by ranges of the entity id, in the predictions parent's own type and order
(``bigint``, ``text`` in the database's default collation, ``uuid``): the boundaries are the
n-quantiles of (a sample of) the run's ids, computed once by the first shard and recorded.
Shard i reads ``lo_i <= id < hi_i`` (shard 0 also takes the NULL ids, which are rejected rows),
so the parts are disjoint and cover every row whatever the table holds. The condition is part
of the COPY query: a shard receives only its own rows, and with an index on the id (after the
snapshot column, if any) its scan reads only its own range. Each shard's table carries its
range as a CHECK, so at publish it becomes a range partition of the run's table without a scan,
and the run's primary key holds across shards. The measured cost: benchmarks/RESULTS.md.

**Who may score.** A shard holds the (model, snapshot) advisory lock *shared* for its session
(an unsharded run holds it exclusively, so the two exclude each other), plus a shared lock on
its run id that tells the world the run is live. A sharded run whose shards are all gone stays
``running`` and still excludes other runs of its model and snapshot, until no shard of it has
started or finished for ``SCORER_SHARD_TIMEOUT_SECONDS``: then the next run abandons it
(``failed``, error ``abandoned: ...``) and drops its shards' tables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from scorer.errors import ConfigError, LockBusyError, PermanentError
from scorer.io import sink
from scorer.model import registry, run_copy
from scorer.postgres import db, locks
from scorer.postgres.identifiers import quote_any, quote_identifier
from scorer.run import record

if TYPE_CHECKING:
    from scorer.config import RunSettings
    from scorer.io.features import FeaturePlan

SAMPLE_ROWS = 200_000
"""Ids sampled for the boundaries: quantiles of 200k ids balance shards to about 1%."""

RESULT_SETTINGS = (
    "model_name",
    "features_table",
    "entity_column",
    "snapshot_column",
    "score_kind",
    "positive_class",
    "max_rejected_ratio",
    "max_score_psi",
    "min_rows_ratio",
    "max_null_share_increase",
    "quality_override",
    "reasons",
)
"""Settings every shard of a run must share: they change what is scored or published.

The model selector, the snapshot and the threshold are not here: they are *resolved* once,
recorded, and used by every shard as recorded."""


class RunFailedError(PermanentError):
    """The sharded run this shard belongs to has failed (another shard, or the gate)."""

    kind = "run_failed"


@dataclass(frozen=True)
class Split:
    """Ranges of entity ids: ``bounds`` sorted and distinct, ``len(bounds) + 1`` ranges.

    Shard i < ranges reads ``[bounds[i-1], bounds[i])`` (open-ended at both ends); a shard
    with no range (a table with fewer distinct ids than shards) reads nothing.
    """

    shards: int
    bounds: tuple[str, ...]

    @property
    def ranges(self) -> int:
        """How many shards have a range to read."""
        return len(self.bounds) + 1

    def range_of(self, shard: int) -> tuple[str | None, str | None] | None:
        """Shard ``shard``'s (lower, upper) bound, ``None`` meaning open; ``None`` if none."""
        if shard >= self.ranges:
            return None
        lower = self.bounds[shard - 1] if shard > 0 else None
        upper = self.bounds[shard] if shard < len(self.bounds) else None
        return lower, upper

    def as_json(self) -> dict[str, Any]:
        """The run row's ``shard_split``."""
        return {"method": "range", "shards": self.shards, "bounds": list(self.bounds)}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Split:
        """The split recorded on the run row."""
        return cls(int(value["shards"]), tuple(str(bound) for bound in value["bounds"]))


_KEY_TYPES = {"bigint": "int8", "text": "text", "uuid": "uuid"}


def key_sql(plan: FeaturePlan) -> str:
    """The entity id as the split compares it: the predictions parent's type and order."""
    column = quote_any(plan.entity)
    if plan.entity_kind == "text":
        return f'({column}::text COLLATE "default")'
    return column  # int2/int4/int8 compare with int8 literals through the btree's own family


def _literal(cur: db.Cursor, value: str, kind: str) -> str:
    return cur.mogrify(f"%s::{_KEY_TYPES[kind]}", (value,)).decode()


def condition(cur: db.Cursor, split: Split, shard: int, plan: FeaturePlan) -> str:
    """The WHERE condition of shard ``shard``'s part of the relation."""
    found = split.range_of(shard)
    if found is None:
        return "false"
    lower, upper = found
    key = key_sql(plan)
    parts = []
    if lower is not None:
        parts.append(f"{key} >= {_literal(cur, lower, plan.entity_kind)}")
    if upper is not None:
        parts.append(f"{key} < {_literal(cur, upper, plan.entity_kind)}")
    where = " AND ".join(parts) or "true"
    if shard == 0 and parts:  # NULL ids are rejected rows: counted once, by shard 0
        where = f"{quote_any(plan.entity)} IS NULL OR ({where})"
    return where


def compute_split(cur: db.Cursor, plan: FeaturePlan, shards: int) -> Split:
    """The n-quantiles of the run's ids (of a sample of about ``SAMPLE_ROWS``).

    A table or materialized view is sampled by pages (``TABLESAMPLE SYSTEM``: at 5M rows 0.06 s
    of the server, against 0.6 s for a ``random()`` filter, which reads every row); a view by
    rows. The boundaries only balance the shards; disjointness and coverage hold for any
    boundaries.
    """
    where = " AND ".join((*plan.where, f"{quote_any(plan.entity)} IS NOT NULL"))
    cur.execute(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {plan.relation.sql} WHERE {where}")
    explained = db.one_value(cur)
    if isinstance(explained, str):
        explained = json.loads(explained)
    estimate = float(explained[0]["Plan"]["Plan Rows"])
    fraction = min(1.0, SAMPLE_ROWS / max(estimate, 1.0))
    quantiles = [k / shards for k in range(1, shards)]
    key = key_sql(plan)
    pages = _samples_pages(cur, plan)
    while True:
        source, sample = plan.relation.sql, ""
        if fraction < 1.0 and pages:
            source += f" TABLESAMPLE SYSTEM ({fraction * 100!r})"
        elif fraction < 1.0:
            sample = f" AND random() < {fraction!r}"
        cur.execute(
            f"SELECT (percentile_disc(%s::float8[]) WITHIN GROUP (ORDER BY {key}))::text[]"
            f" FROM {source} WHERE {where}{sample}",
            (quantiles,),
        )
        values = db.one_value(cur) or []
        bounds: list[str] = []
        for value in values:
            if value is not None and (not bounds or bounds[-1] != value):
                bounds.append(str(value))
        if len(bounds) == shards - 1 or fraction >= 1.0:
            return Split(shards, tuple(bounds))
        fraction = 1.0  # the planner overestimated: take every id


def _samples_pages(cur: db.Cursor, plan: FeaturePlan) -> bool:
    """Whether the relation takes ``TABLESAMPLE`` (a table or materialized view, not a view)."""
    cur.execute(
        "SELECT relkind IN ('r', 'm') FROM pg_class WHERE oid = to_regclass(%s)",
        (plan.relation.sql,),
    )
    row = cur.fetchone()
    return bool(row and row[0])


@dataclass(frozen=True)
class Recorded:
    """What the first shard recorded on the run row."""

    status: str
    shards: int
    split: Split | None
    settings: dict[str, Any]
    model_name: str
    selector: str
    version: int
    mlflow_run_id: str | None
    source: str | None
    model_id: str | None
    snapshot: str
    threshold: float | None
    started_at: datetime
    error: str | None
    failed_shard: int | None

    def resolution(self) -> registry.ResolvedModel:
        """The model version the first shard resolved, as every later shard and retry scores
        it (the alias may have moved since)."""
        return registry.ResolvedModel(
            name=self.model_name,
            version=self.version,
            selector=self.selector,
            mlflow_run_id=self.mlflow_run_id,
            source=self.source,
            model_id=self.model_id,
            aliases=(),
            stage=None,
        )


_RECORDED = (
    "status, shards, shard_split, run_settings, model_name, model_selector, model_version,"
    " mlflow_run_id, model_source, model_id, snapshot, threshold, started_at, error,"
    " failed_shard"
)


def recorded(cur: db.Cursor, schema: str, run_id: str, lock: str = "") -> Recorded | None:
    """The run row as the first shard recorded it (``lock``: e.g. ``FOR UPDATE``)."""
    cur.execute(
        f"SELECT {_RECORDED} FROM {quote_identifier(schema)}.scoring_runs WHERE run_id = %s {lock}",
        (run_id,),
    )
    row = cur.fetchone()
    if row is None:
        return None
    split = None if row[2] is None else Split.from_json(row[2])
    return Recorded(
        status=str(row[0]),
        shards=int(row[1]),
        split=split,
        settings=dict(row[3] or {}),
        model_name=str(row[4]),
        selector=str(row[5]),
        version=int(row[6]),
        mlflow_run_id=row[7],
        source=row[8],
        model_id=row[9],
        snapshot=str(row[10]),
        threshold=row[11],
        started_at=row[12],
        error=row[13],
        failed_shard=row[14],
    )


def result_settings(settings: RunSettings) -> dict[str, Any]:
    """The settings every shard of a run must share, as recorded on the run row."""
    return {name: getattr(settings, name) for name in RESULT_SETTINGS}


def check_joinable(settings: RunSettings, found: Recorded) -> None:
    """A pod may join a recorded run only with the run's shard count and result settings."""
    if found.shards != settings.shards:
        raise ConfigError(
            f"run {settings.run_id} was opened with SCORER_SHARDS={found.shards}; this pod has"
            f" SCORER_SHARDS={settings.shards}. Every shard of a run needs the same count: fix"
            " the Job, or start a new run (a new run id)"
        )
    mine = result_settings(settings)
    differ = sorted(
        name for name in RESULT_SETTINGS if found.settings.get(name, mine[name]) != mine[name]
    )
    if differ:
        names = ", ".join(f"SCORER_{name.upper()}" for name in differ)
        raise ConfigError(
            f"run {settings.run_id} was opened with other settings than this pod's ({names});"
            " every shard of a run must score alike: fix the Job, or start a new run"
        )


def lock_shared(cur: db.Cursor, settings: RunSettings, model_name: str, snapshot: str) -> None:
    """Hold the (model, snapshot) lock shared, the run's liveness lock and this shard's own
    lock, for the session."""
    record.wait_for_run_lock(cur, settings, model_name, snapshot, shared=True)
    locks.acquire(cur, locks.live_run(settings.target_schema, settings.run_id), shared=True)
    # One process per shard: a second attempt of the same shard (a manual rerun beside a live
    # pod) waits for the retry instead of racing it for the shard's table.
    shard_key = locks.shard(settings.target_schema, settings.run_id, settings.shard)
    if not locks.try_acquire(cur, shard_key):
        raise LockBusyError(
            f"shard {settings.shard} of run {settings.run_id} is being scored by another"
            " process; this one stops (a retry finds it done, or takes over)"
        )


def exclude_other_runs(
    cur: db.Cursor, settings: RunSettings, model_name: str, snapshot: str
) -> list[str]:
    """Refuse (``LockBusyError``) while another sharded run of this model and snapshot is open;
    abandon those past the time-out. Returns the run ids abandoned.

    Runs in the caller's transaction (both paths: a shard opening its run, and an unsharded
    run after taking its exclusive lock).
    """
    schema = quote_identifier(settings.target_schema)
    cur.execute(
        "SELECT r.run_id, greatest(r.started_at, max(s.started_at), max(s.finished_at))"
        f" > now() - make_interval(secs => %s)"
        f" FROM {schema}.scoring_runs AS r LEFT JOIN {schema}.scoring_run_shards AS s"
        "  USING (run_id)"
        " WHERE r.status = 'running' AND r.shards > 1 AND r.model_name = %s"
        "  AND r.snapshot = %s AND r.run_id <> %s"
        " GROUP BY r.run_id, r.started_at ORDER BY r.run_id",
        (settings.shard_timeout_seconds, model_name, snapshot, settings.run_id),
    )
    others = cur.fetchall()
    live = locks.holders(
        cur, [locks.live_run(settings.target_schema, run_id) for run_id, _ in others]
    )
    abandoned = []
    for (run_id, recent), pid in zip(others, live, strict=True):
        if pid is not None or recent:
            raise LockBusyError(
                f"sharded run {run_id} is still open for {model_name} snapshot {snapshot}"
                f" ({'a shard is live' if pid is not None else 'a shard ran recently'}); it"
                f" stops holding them after SCORER_SHARD_TIMEOUT_SECONDS="
                f"{settings.shard_timeout_seconds:g} without a shard"
            )
        fail_run(
            cur,
            settings.target_schema,
            run_id,
            f"abandoned: no shard live, started or finished in the last"
            f" {settings.shard_timeout_seconds:g}s (SCORER_SHARD_TIMEOUT_SECONDS); run"
            f" {settings.run_id} went ahead; nothing of it was published",
            None,
            evidence=record.Evidence(),  # nothing its gate saw survived: publishing rolls back
        )
        abandoned.append(run_id)
    return abandoned


def fail_run(  # noqa: PLR0913 - the run, why and by which shard, and what its gate saw
    cur: db.Cursor,
    schema: str,
    run_id: str,
    error: str,
    shard: int | None,
    *,
    evidence: record.Evidence,
) -> bool:
    """Mark a running sharded run failed and drop its shards' tables and its model copy (in
    the caller's transaction). False if it was no longer running.

    ``evidence`` is what the quality gate saw, recorded as a single run's failure records it
    (empty when the run failed before its gate)."""
    quoted = quote_identifier(schema)
    cur.execute(
        f"UPDATE {quoted}.scoring_runs SET status = 'failed', finished_at = now(),"
        f" error = %(error)s, failed_shard = %(shard)s, {record.EVIDENCE}"
        " WHERE run_id = %(run_id)s AND status = 'running'",
        {"error": error, "shard": shard, "run_id": run_id, **evidence.columns()},
    )
    if cur.rowcount == 0:
        return False
    cur.execute(
        f"SELECT staging_table FROM {quoted}.scoring_run_shards"
        " WHERE run_id = %s AND staging_table IS NOT NULL",
        (run_id,),
    )
    for (table,) in cur.fetchall():
        sink.drop_unpublished(cur, schema, table)
    cur.execute(
        f"UPDATE {quoted}.scoring_run_shards SET staging_table = NULL WHERE run_id = %s",
        (run_id,),
    )
    run_copy.drop(cur, schema, run_id)
    return True


def guard_unsharded(cur: db.Cursor, settings: RunSettings, model_name: str, snapshot: str) -> None:
    """An unsharded run, holding its exclusive lock: refuse a run id a sharded run recorded,
    and wait (``LockBusyError``) while another sharded run of the model and snapshot is open."""
    found = recorded(cur, settings.target_schema, settings.run_id)
    if found is not None and found.shards != settings.shards:
        check_joinable(settings, found)
    exclude_other_runs(cur, settings, model_name, snapshot)


def record_split(cur: db.Cursor, settings: RunSettings, split: Split) -> None:
    """The first shard records the shard count, the split and the result settings."""
    cur.execute(
        f"UPDATE {quote_identifier(settings.target_schema)}.scoring_runs"
        " SET shards = %s, shard_split = %s, run_settings = %s WHERE run_id = %s",
        (
            settings.shards,
            json.dumps(split.as_json()),
            json.dumps(result_settings(settings)),
            settings.run_id,
        ),
    )
