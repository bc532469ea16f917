"""``scorer prune``: drop old runs' partitions; the run rows stay, as history.

**What stays.** Per model, a published run is kept when either rule keeps it: it is one of
the last ``SCORER_KEEP_RUNS`` runs (ranked as ``latest_predictions`` ranks them: newest
snapshot first, then latest finished), or it was published in the last ``SCORER_KEEP_DAYS``
days. Whatever the rules say, the run ``latest_predictions`` shows stays, and so does the
newest published run of every snapshot that keeps a run, so neither ``latest_predictions``
nor ``published_predictions`` ever switches to an older run. When evaluation is configured
(``SCORER_OUTCOMES_TABLE``), a run ``scorer evaluate`` has not evaluated yet (at
``SCORER_OUTCOME_HORIZON_DAYS``, if set) stays too, and each is logged
(``prune.would_keep_unevaluated`` with ``--dry-run``). A pruned run loses its partition
to one ``DROP TABLE``, in the transaction that marks its row ``pruned`` (with ``pruned_at``);
the schema's function ``run_partition_drop`` drops it, and only a partition whose runs are all
marked ``pruned`` (``scorer.postgres.privileges``). Shadow runs (``scorer.run.shadow``) are ranked
apart, among the model's shadow runs, by the same rules: the last ``SCORER_KEEP_RUNS`` and
those of the last ``SCORER_KEEP_DAYS`` days stay, and so does the newest shadow run of every
snapshot that keeps a published run; a shadow run is never the latest, and keeps nothing else.

**Beside a scoring run.** Dropping a partition takes an ACCESS EXCLUSIVE lock on its parent;
a run holds a share lock on the parent for its whole publishing transaction (from its
``CREATE TABLE … LIKE``). So a parent a live run is writing into is skipped at once, and
every DROP waits at most ``SCORER_PRUNE_LOCK_TIMEOUT_SECONDS`` for its lock: one not granted
in time defers that parent's remaining partitions to the next prune. While a DROP waits, a
run (or a reader) asking for the parent queues behind it, so it is held up at most that long;
a run already scoring is not held up at all (its ``ATTACH`` goes ahead of the waiting DROP,
since it already holds a lock that DROP waits for).

**What failed runs leave behind.**
- A row stuck in ``running`` whose process is gone (SIGKILL, an evicted pod, a lost node). A
  live run holds its (model, snapshot) advisory lock (``locks.run``) for its whole
  session, so a ``running`` row whose lock no session holds is dead: it becomes ``failed``.
- A table the scorer made for a run (named ``sink.partition_name(run id)``, its ``run_id``
  default that id) that is not attached, whose run is neither live nor published: dropped.
  (A run's table is invisible to other sessions until its transaction commits, and it commits
  attached, so this is what an interrupted manual operation or a detach leaves.)

Every decision is one log line (``prune.pruned``, ``prune.busy``, ``prune.abandoned``,
``prune.orphan_dropped``; with ``--dry-run`` ``prune.would_prune`` and friends, and nothing
changes), and one summary line ends the command (``prune.done`` or ``prune.planned``).
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime

import psycopg2.errors
import structlog

from scorer.config import PruneSettings
from scorer.errors import EXIT_OK, LockBusyError
from scorer.io import sink
from scorer.postgres import db, locks, privileges, ranking, schema, sessions
from scorer.postgres.identifiers import quote_identifier

log = structlog.get_logger("scorer")

_BOUND = re.compile(r"FOR VALUES IN \((.*)\)", re.DOTALL)
_LITERAL = re.compile(r"'((?:[^']|'')*)'")
_TEXT_DEFAULT = re.compile(r"'((?:[^']|'')*)'::text")
_APPLICATION = "scorer prune"
_SCHEMA_LOCK_WAIT_SECONDS = 60
"""How long a prune waits for another prune of the same schema (e.g. another release's)."""
_NOT_EVALUATED = "not_evaluated"
_ABANDONED = (
    "abandoned: the run's session ended before it finished (killed, evicted or cut off from "
    "the database); marked failed by prune"
)


@dataclass(frozen=True)
class Rules:
    """Which published runs each model keeps (a run is kept if either rule keeps it)."""

    keep_runs: int | None
    keep_days: int | None
    model_name: str | None = None
    keep_unevaluated: bool = False
    """Evaluation is configured: a run ``scorer evaluate`` has not judged yet stays."""
    horizon_days: int | None = None
    """The horizon it evaluates at (``None``: an evaluation at any horizon counts)."""

    def describe(self) -> str:
        """Why a run that neither rule keeps goes: ``not among the last 7 runs, …``."""
        parts = []
        if self.keep_runs is not None:
            parts.append(f"not among the model's last {self.keep_runs} published runs")
        if self.keep_days is not None:
            parts.append(f"published more than {self.keep_days} days ago")
        return " and ".join(parts)


@dataclass(frozen=True)
class Published:
    """A published run and what keeps it (``None``: nothing, it goes)."""

    run_id: str
    model_name: str
    snapshot: str
    entity_type: str
    finished_at: datetime
    kept_by: str | None


@dataclass(frozen=True)
class Partition:
    """A partition of one of the predictions parents and the run ids its bound lists."""

    parent: str
    table: str
    run_ids: tuple[str, ...]


@dataclass(frozen=True)
class Running:
    """A ``running`` row, and the session holding its advisory lock (``None``: none, dead)."""

    run_id: str
    model_name: str
    snapshot: str
    started_at: datetime
    attempts: int
    pid: int | None
    shards: int = 1  # a sharded run between its shards has no session: see scorer.run.shard_plan


@dataclass(frozen=True)
class Orphan:
    """A table the scorer made for ``run_id`` that is not attached to any parent."""

    table: str
    run_id: str
    status: str | None


@dataclass
class PruneOutcome:
    """What one prune did (or, dry, would do)."""

    pruned: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    kept: int = 0
    abandoned: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    kept_unevaluated: int = 0


def main(settings: PruneSettings, dry_run: bool) -> int:
    """``scorer prune``: apply the retention rules to the target schema; return the exit code."""
    started = time.perf_counter()
    rules = Rules(
        settings.keep_runs,
        settings.keep_days,
        settings.model_name,
        keep_unevaluated=settings.outcomes_table is not None,
        horizon_days=settings.outcome_horizon_days,
    )
    target = settings.target_schema
    url = settings.database_url.get_secret_value()
    with closing(db.connect(url)) as conn, db.database_errors("pruning"):
        with closing(db.connect(url)) as other:  # prune's lock, and the runs', need sessions
            sessions.require_session(conn, other)
        with db.autocommit(conn), conn.cursor() as cur:  # session work: its name and its lock
            cur.execute("SELECT set_config('application_name', %s, false)", (_APPLICATION,))
            _lock_schema(cur, target)
        with db.transaction(conn):
            privileges.require(conn, target, "prune")
            schema.require_migrated(conn, target)
        outcome = prune(conn, target, rules, settings.prune_lock_timeout_seconds, dry_run)
    log.info(
        "prune.planned" if dry_run else "prune.done",
        schema=target,
        model_name=rules.model_name,
        keep_runs=rules.keep_runs,
        keep_days=rules.keep_days,
        **{
            ("would_prune" if dry_run else "pruned"): len(outcome.pruned),
            "kept": outcome.kept,
            "kept_unevaluated": outcome.kept_unevaluated,
            "busy": len(outcome.busy),
            ("would_abandon" if dry_run else "abandoned"): len(outcome.abandoned),
            ("would_drop_orphans" if dry_run else "orphans_dropped"): len(outcome.orphans),
        },
        seconds=round(time.perf_counter() - started, 3),
    )
    return EXIT_OK


def _lock_schema(cur: db.Cursor, target: str) -> None:
    """One prune per schema at a time: wait for the schema's prune lock (session-level), at
    most ``_SCHEMA_LOCK_WAIT_SECONDS``, or raise ``LockBusyError``."""
    cur.execute("SELECT set_config('lock_timeout', %s, false)", (f"{_SCHEMA_LOCK_WAIT_SECONDS}s",))
    try:
        locks.acquire(cur, locks.prune(target))
    except psycopg2.errors.LockNotAvailable:
        raise LockBusyError(
            f"another prune of schema {target!r} held its lock for {_SCHEMA_LOCK_WAIT_SECONDS}s"
        ) from None
    finally:
        cur.execute("RESET lock_timeout")


def prune(
    conn: db.Connection, target: str, rules: Rules, lock_timeout: float, dry_run: bool = False
) -> PruneOutcome:
    """Mark dead running rows failed, drop what the rules let go, drop orphaned run tables."""
    return _Pruner(conn, target, lock_timeout, dry_run, rules.describe()).prune(rules)


def published_runs(conn: db.Connection, target: str, rules: Rules) -> list[Published]:
    """Every published run (of ``rules.model_name``, or of every model) and what keeps it."""
    table = f"{quote_identifier(target)}.scoring_runs"
    evaluations = f"{quote_identifier(target)}.scoring_run_evaluations"
    with conn.cursor() as cur:
        cur.execute(
            f"""
            WITH published AS (
                SELECT run_id, model_name, snapshot, entity_type, finished_at,
                       shadow,  -- shadow runs rank apart (scorer.run.shadow)
                       {ranking.apart(ranking.LATEST_RANK, "shadow")} AS rank,
                       {ranking.apart(ranking.PUBLISHED_RANK, "shadow")} AS newest
                FROM {table}
                WHERE status = 'succeeded'
                  AND (%(model)s::text IS NULL OR model_name = %(model)s::text)
            ), ruled AS (
                SELECT *, rank = 1 AND NOT shadow AS latest,
                       coalesce(rank <= %(keep_runs)s::integer, false) AS by_runs,
                       coalesce(finished_at >= now()
                                - make_interval(days => %(keep_days)s::integer), false) AS by_days,
                       %(unevaluated)s AND NOT EXISTS (
                           SELECT FROM {evaluations} AS e WHERE e.run_id = published.run_id
                             AND (%(horizon)s::integer IS NULL
                                  OR e.horizon_days = %(horizon)s::integer)) AS unevaluated
                FROM published
            ), kept_snapshots AS (
                SELECT DISTINCT model_name, snapshot FROM ruled
                WHERE NOT shadow AND (latest OR by_runs OR by_days OR unevaluated)
            )
            SELECT r.run_id, r.model_name, r.snapshot, r.entity_type, r.finished_at,
                   CASE WHEN r.latest THEN 'latest'
                        WHEN r.by_runs THEN 'keep_runs'
                        WHEN r.by_days THEN 'keep_days'
                        WHEN r.unevaluated THEN 'not_evaluated'
                        WHEN r.newest = 1 AND k.snapshot IS NOT NULL THEN 'newest_of_kept_snapshot'
                   END
            FROM ruled AS r LEFT JOIN kept_snapshots AS k USING (model_name, snapshot)
            ORDER BY r.model_name, r.rank
            """,
            {
                "model": rules.model_name,
                "keep_runs": rules.keep_runs,
                "keep_days": rules.keep_days,
                "unevaluated": rules.keep_unevaluated,
                "horizon": rules.horizon_days,
            },
        )
        return [Published(*row) for row in cur.fetchall()]


def partitions_of(conn: db.Connection, target: str) -> list[Partition]:
    """The partitions of the predictions parents in ``target`` and the run ids they hold."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT parent.relname, child.relname, pg_get_expr(child.relpartbound, child.oid)"
            " FROM pg_inherits AS i"
            " JOIN pg_class AS child ON child.oid = i.inhrelid"
            " JOIN pg_class AS parent ON parent.oid = i.inhparent"
            " JOIN pg_namespace AS n ON n.oid = parent.relnamespace"
            " WHERE n.nspname = %s AND parent.relname = ANY(%s)",
            (target, list(sink.PARENTS.values())),
        )
        rows = cur.fetchall()
    found = []
    for parent, table, bound in rows:
        listed = _BOUND.fullmatch(bound or "")
        if listed is None:  # a DEFAULT partition: never ours to drop
            continue
        values = tuple(value.replace("''", "'") for value in _LITERAL.findall(listed.group(1)))
        found.append(Partition(parent, table, values))
    return found


def live_and_dead(conn: db.Connection, target: str) -> list[Running]:
    """Every ``running`` row, with the pid of the session holding its advisory lock, if any."""
    table = f"{quote_identifier(target)}.scoring_runs"
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT run_id, model_name, snapshot, started_at, attempts, shards FROM {table}"
            " WHERE status = 'running' ORDER BY started_at"
        )
        rows = cur.fetchall()
        if not rows:
            return []
        keys = [locks.run(target, row[1], row[2]) for row in rows]
        holders = locks.holders(cur, keys)
    return [
        Running(run_id, model, snapshot, started_at, attempts, pid, shards)
        for (run_id, model, snapshot, started_at, attempts, shards), pid in zip(
            rows, holders, strict=True
        )
    ]


def orphans_of(conn: db.Connection, target: str) -> list[Orphan]:
    """Unattached tables the scorer made for a run (name and ``run_id`` default agree)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname, pg_get_expr(d.adbin, d.adrelid) FROM pg_class AS c"
            " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
            " JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attname = 'run_id'"
            "  AND NOT a.attisdropped"
            " JOIN pg_attrdef AS d ON d.adrelid = c.oid AND d.adnum = a.attnum"
            " WHERE n.nspname = %s AND c.relkind = 'r' AND NOT c.relispartition"
            r"  AND c.relname LIKE 'predictions\_%%'",
            (target,),
        )
        found: dict[str, str] = {}
        for table, default in cur.fetchall():
            literal = _TEXT_DEFAULT.fullmatch(default or "")
            run_id = literal.group(1).replace("''", "'") if literal else None
            if run_id is not None and sink.partition_name(run_id) == table:
                found[run_id] = table
        if not found:
            return []
        cur.execute(
            f"SELECT run_id, status FROM {quote_identifier(target)}.scoring_runs"
            " WHERE run_id = ANY(%s)",
            (list(found),),
        )
        status = dict(cur.fetchall())
    return [Orphan(table, run_id, status.get(run_id)) for run_id, table in sorted(found.items())]


@dataclass
class _Pruner:
    """One prune of one target schema: what it reads, then each change in its own transaction."""

    conn: db.Connection
    target: str
    lock_timeout: float
    dry_run: bool
    reason: str
    outcome: PruneOutcome = field(default_factory=PruneOutcome)

    @property
    def runs_table(self) -> str:
        return f"{quote_identifier(self.target)}.scoring_runs"

    def prune(self, rules: Rules) -> PruneOutcome:
        conn, target, outcome = self.conn, self.target, self.outcome
        with db.transaction(conn):
            running = live_and_dead(conn, target)
            published = published_runs(conn, target, rules)
            partitions = partitions_of(conn, target)
            orphans = orphans_of(conn, target)
        # A sharded run between its shards holds no session: the next run of its model and
        # snapshot abandons it past SCORER_SHARD_TIMEOUT_SECONDS (scorer.run.shard_plan), not
        # prune.
        self.abandon([run for run in running if run.pid is None and run.shards == 1])

        doomed = {run.run_id: run for run in published if run.kept_by is None}
        outcome.kept = len(published) - len(doomed)
        for run in published:
            if run.kept_by == _NOT_EVALUATED:
                outcome.kept_unevaluated += 1
                log.info(
                    "prune.would_keep_unevaluated" if self.dry_run else "prune.kept_unevaluated",
                    run_id=run.run_id,
                    model_name=run.model_name,
                    detail="not evaluated yet: evaluation is configured (SCORER_OUTCOMES_TABLE),"
                    " and scorer evaluate needs its predictions",
                )
            elif run.kept_by is not None:
                log.debug("prune.kept", run_id=run.run_id, kept_by=run.kept_by)
        by_run = {run_id: part for part in partitions for run_id in part.run_ids}
        droppable: dict[str, list[tuple[Partition, list[Published]]]] = defaultdict(list)
        seen: set[str] = set()
        without_partition: list[Published] = []
        for run in sorted(doomed.values(), key=lambda run: run.finished_at):  # oldest first
            part = by_run.get(run.run_id)
            if part is None:
                without_partition.append(run)
            elif part.table not in seen:
                seen.add(part.table)
                if all(run_id in doomed for run_id in part.run_ids):
                    droppable[part.parent].append((part, [doomed[r] for r in part.run_ids]))
                else:  # a shared partition (the pre-partitioning predictions_v1) with a kept run
                    held = [run_id for run_id in part.run_ids if run_id in doomed]
                    outcome.kept += len(held)
                    log.info(
                        "prune.kept_shared",
                        partition=f"{target}.{part.table}",
                        runs=held,
                        detail="its partition also holds a run that is kept",
                    )
        if without_partition:
            self.mark_pruned(without_partition)
        for parent, parts in droppable.items():
            self.drop_parent(parent, parts)
        self.drop_orphans(orphans, {run.run_id for run in running if run.pid is not None})
        return outcome

    def abandon(self, dead: Sequence[Running]) -> None:
        """Mark running rows whose session is gone ``failed`` (guarded: a retry may reopen
        them meanwhile, with a new start time and attempt)."""
        for run in dead:
            if not self.dry_run:
                with db.transaction(self.conn), self.conn.cursor() as cur:
                    cur.execute(
                        f"UPDATE {self.runs_table} SET status = 'failed', finished_at = now(),"
                        " error = %s WHERE run_id = %s AND status = 'running' AND attempts = %s"
                        " AND started_at = %s",
                        (_ABANDONED, run.run_id, run.attempts, run.started_at),
                    )
                    if cur.rowcount == 0:
                        continue  # a retry reopened it: it is live again
            log.info(
                "prune.would_abandon" if self.dry_run else "prune.abandoned",
                run_id=run.run_id,
                model_name=run.model_name,
                snapshot=run.snapshot,
                started_at=run.started_at.isoformat(),
                detail="running, but no session holds its lock: its process is gone",
            )
            self.outcome.abandoned.append(run.run_id)

    def mark_pruned(self, gone: Sequence[Published]) -> None:
        """Runs the rules let go whose partition is already gone: only their rows change."""
        ids = [run.run_id for run in gone]
        if not self.dry_run:
            with db.transaction(self.conn), self.conn.cursor() as cur:
                cur.execute(
                    f"UPDATE {self.runs_table} SET status = 'pruned', pruned_at = now()"
                    " WHERE run_id = ANY(%s) AND status = 'succeeded' RETURNING run_id",
                    (ids,),
                )
                ids = [row[0] for row in cur.fetchall()]
        for run in gone:
            if run.run_id in ids:
                self.log_pruned(run, None)
                self.outcome.pruned.append(run.run_id)

    def drop_parent(self, parent: str, parts: Sequence[tuple[Partition, list[Published]]]) -> None:
        """Drop ``parts`` of ``parent``, oldest first; stop at the first lock not granted in
        time, leaving the rest for the next prune."""
        busy_with = self.live_runs_locking(parent)
        if busy_with:
            self.busy(parent, parts, f"live runs write into it: {', '.join(busy_with)}")
            return
        for index, (part, members) in enumerate(parts):
            if not self.dry_run:
                try:
                    self.drop(part)
                except psycopg2.errors.LockNotAvailable:
                    why = f"its lock was not granted within {self.lock_timeout:g}s"
                    self.busy(parent, parts[index:], why)
                    return
                except _StatusChangedError:
                    continue  # a member is no longer published as planned: nothing dropped
            for run in members:
                self.log_pruned(run, f"{self.target}.{part.table}")
                self.outcome.pruned.append(run.run_id)

    def drop(self, part: Partition) -> None:
        """One partition: its runs marked pruned and its table dropped, in one transaction."""
        with db.transaction(self.conn), self.conn.cursor() as cur:
            _set_lock_timeout(cur, self.lock_timeout)
            cur.execute(
                f"UPDATE {self.runs_table} SET status = 'pruned', pruned_at = now()"
                " WHERE run_id = ANY(%s) AND status = 'succeeded'",
                (list(part.run_ids),),
            )
            if cur.rowcount != len(part.run_ids):
                raise _StatusChangedError(part.table)
            cur.execute(
                f"SELECT {quote_identifier(self.target)}.run_partition_drop(%s)", (part.table,)
            )

    def live_runs_locking(self, parent: str) -> list[str]:
        """Live runs whose session holds a lock on ``parent`` (a DROP would wait for them)."""
        with db.transaction(self.conn):
            running = live_and_dead(self.conn, self.target)
            live = {run.pid: run.run_id for run in running if run.pid is not None}
            if not live:
                return []
            with self.conn.cursor() as cur:
                cur.execute(
                    "SELECT DISTINCT pid FROM pg_locks WHERE locktype = 'relation' AND granted"
                    " AND relation = to_regclass(%s)",
                    (f"{quote_identifier(self.target)}.{quote_identifier(parent)}",),
                )
                holders = {row[0] for row in cur.fetchall()}
        return sorted(run_id for pid, run_id in live.items() if pid in holders)

    def drop_orphans(self, orphans: Sequence[Orphan], live: set[str]) -> None:
        """Drop unattached run tables whose run is neither live nor published."""
        for orphan in orphans:
            table = f"{self.target}.{orphan.table}"
            if orphan.run_id in live:
                continue
            if orphan.status == "succeeded":
                log.warning(
                    "prune.detached_published",
                    table=table,
                    run_id=orphan.run_id,
                    detail="the run is published but its table is not attached; left alone",
                )
                continue
            if not self.dry_run:
                try:
                    with db.transaction(self.conn), self.conn.cursor() as cur:
                        _set_lock_timeout(cur, self.lock_timeout)
                        sink.drop_unpublished(cur, self.target, orphan.table)
                except psycopg2.errors.LockNotAvailable:
                    log.warning("prune.busy", table=table, run_id=orphan.run_id)
                    continue
            log.info(
                "prune.would_drop_orphan" if self.dry_run else "prune.orphan_dropped",
                table=table,
                run_id=orphan.run_id,
                run_status=orphan.status,
                detail="an unattached run table with no live run",
            )
            self.outcome.orphans.append(orphan.table)

    def busy(
        self, parent: str, parts: Sequence[tuple[Partition, list[Published]]], why: str
    ) -> None:
        left = [run.run_id for _, members in parts for run in members]
        log.warning(
            "prune.busy",
            parent=f"{self.target}.{parent}",
            runs=left,
            detail=f"{len(parts)} partitions left for the next prune: {why}",
        )
        self.outcome.busy += left

    def log_pruned(self, run: Published, partition: str | None) -> None:
        log.info(
            "prune.would_prune" if self.dry_run else "prune.pruned",
            run_id=run.run_id,
            model_name=run.model_name,
            snapshot=run.snapshot,
            finished_at=run.finished_at.isoformat(),
            partition=partition,
            reason=self.reason if partition else f"{self.reason}; its partition was already gone",
        )


class _StatusChangedError(Exception):
    """A partition's runs are not all still ``succeeded``: its transaction rolls back."""


def _set_lock_timeout(cur: db.Cursor, seconds: float) -> None:
    """This transaction waits at most ``seconds`` for any lock (then 55P03, lock_not_available)."""
    cur.execute("SELECT set_config('lock_timeout', %s, true)", (f"{seconds * 1000:.0f}ms",))
