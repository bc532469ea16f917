"""A shard of a sharded run: open or join the run, score this shard's part, publish when last.

Each shard is one process (an Indexed Job's pod) with ``SCORER_SHARDS=n`` and its own
``SCORER_SHARD_INDEX``, under the run id all shards share. Its steps:

1. **Join.** Read the run row. If no shard has recorded the run yet, take the run's opening
   lock (the shards that start at once wait on it). The shard that opens the run resolves the
   model, picks the snapshot, computes the split, and records them with the shard count and
   the result settings (``scorer.run.shard_record``), and with them a copy of the model's files
   (``scorer.model.run_copy``); every later shard and retry scores exactly what is recorded, and
   loads that copy instead of asking MLflow.
2. **Score.** In one transaction on its own connection: load this shard's part into its own
   table (with the run's lineage defaults and a CHECK of its id range), build its primary key,
   and mark its ``scoring_run_shards`` row succeeded with its counts, timings and score
   statistics. A killed shard leaves nothing; its retry starts afresh and replaces only its own
   output. Every few seconds it checks that the run still stands, and stops if it failed.
3. **Publish.** Lock the run row (``FOR UPDATE``, which serializes the shards that finish at
   once) and, if every shard has succeeded, publish the whole run in one transaction: the
   statistics merged exactly from the shards' counts and histograms, the checks and the
   quality gate on the whole run, the shards' tables attached as range partitions of the run's
   table, that attached as the run's partition, and the run row marked succeeded. Readers see
   no shard's rows before this commits.

A shard failing with exit 2 fails the run in the same transaction that drops the shards'
tables: nothing is published, the run row names the shard and why, and the other shards stop
at their next check. A shard failing with exit 1 only marks its own row; its retry redoes it.

Lineage (``scorer.lineage.recorder``): the shard that opens the run sends the run's OpenLineage
START; every shard sends its own START when it starts scoring and its COMPLETE or FAIL when its part
is committed or it fails; the shard that publishes (or fails) the run records it in MLflow
and sends the run's COMPLETE (or FAIL).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import psycopg2
import structlog

from scorer.errors import ScorerError
from scorer.io import features, sink
from scorer.lineage.recorder import Lineage
from scorer.model import run_copy
from scorer.postgres import db, schema, sessions
from scorer.postgres.identifiers import quote_identifier
from scorer.run import gate
from scorer.run import shard_record as shards
from scorer.run.record import Counts, RunRecord, lock_key, trigger_of
from scorer.run.single import Prepared, _partition, _RunState, classify, prepare
from scorer.run.statistics import ScoreStats

log = structlog.get_logger("scorer")

_POLL_SECONDS = 2.0
_PUBLISHED = ("succeeded", "pruned")


@dataclass
class ShardState(_RunState):
    """One shard's run: what it scored itself, and (when it publishes) the whole run."""

    found: shards.Recorded | None = None
    prepared: Prepared | None = None
    shard_read: int = 0
    locked: tuple[str, str] | None = None
    failed_run: bool = False
    opened_run: bool = False  # this shard recorded the run (and announces its START)
    published_run: bool = False  # this shard published the run
    shard_open: bool = False  # this shard's START was sent and its end not yet
    _control: db.Connection | None = None
    _last_poll: float = field(default_factory=time.monotonic)

    @property
    def shard(self) -> int:
        return self.settings.shard

    @property
    def runs_table(self) -> str:
        return f"{quote_identifier(self.settings.target_schema)}.scoring_runs"

    @property
    def shards_table(self) -> str:
        return f"{quote_identifier(self.settings.target_schema)}.scoring_run_shards"

    def execute(self) -> None:
        """Join (or open) the run, score this shard's part, publish if it is the last."""
        settings = self.settings
        structlog.contextvars.bind_contextvars(shard=self.shard, shards=settings.shards)
        url = settings.database_url.get_secret_value()
        self.lineage = Lineage.configure(settings)
        with (
            closing(db.connect(url)) as control,
            closing(db.connect(url)) as writer,
            closing(db.connect(url)) as reader,
        ):
            self._control = control
            # The shards' locks must hold (no pooler); refused, nothing is written, not even
            # the failure.
            sessions.require_session(control, writer)
            try:
                self._execute(control, writer, reader)
            except BaseException as exc:
                failure = classify(exc)
                self._fail(control, writer, failure)
                raise failure from exc
            finally:
                self.lineage.close()

    def _execute(
        self, control: db.Connection, writer: db.Connection, reader: db.Connection
    ) -> None:
        settings, timer = self.settings, self.timer
        with timer.step("schema"), db.transaction(control):
            schema.require_migrated(control, settings.target_schema)
        found = self._wait_for_opener(control)
        opening = found is None  # this shard holds the run's opening lock
        todo = True
        for _ in range(3):
            if found is not None and self._settled(found):
                return
            prepared = self._prepare(writer, found)
            self._lock(control, prepared)
            opened = self._open(control, prepared)
            if opened is None:  # another first shard recorded other values meanwhile
                with db.autocommit(control), control.cursor() as cur:
                    found = shards.recorded(cur, settings.target_schema, settings.run_id)
                continue
            found, todo = opened
            break
        else:
            raise ScorerError("the run's recorded resolution kept changing; retry")
        if opening:
            key = shards.opening_key(settings.target_schema, settings.run_id)
            with db.autocommit(control), control.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))
        if self._settled(found):
            return
        assert found.split is not None  # a sharded run records its split
        self.found = found
        self._describe(writer, announce=self.opened_run)
        if todo:
            assert self.lineage is not None
            self.lineage.shard_started(self.shard)
            self.shard_open = True
            self._score_shard(prepared, found, reader, writer)
            self.shard_open = False
            self.lineage.shard_ended(self.shard, self)
        else:
            log.info("shard.already_succeeded", detail="this shard's part is in; publishing")
        self._publish(prepared, found, writer)

    def _wait_for_opener(self, control: db.Connection) -> shards.Recorded | None:
        """The run as recorded; if no shard has recorded it yet, wait for the one that is
        opening it. None: this shard opens the run, and holds the opening lock until then."""
        schema, run_id = self.settings.target_schema, self.settings.run_id
        with db.autocommit(control), control.cursor() as cur:
            found = shards.recorded(cur, schema, run_id)
            if found is not None:
                return found
            key = shards.opening_key(schema, run_id)
            cur.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
            found = shards.recorded(cur, schema, run_id)
            if found is not None:
                cur.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))
        return found

    def _settled(self, found: shards.Recorded) -> bool:
        """A run already published needs nothing; a failed one refuses; any other must fit."""
        if found.status in _PUBLISHED:
            self.outcome = "already_published"
            self.snapshot = found.snapshot
            log.info(
                "run.already_succeeded",
                detail="this run id already published; nothing scored or written",
                snapshot=found.snapshot,
            )
            return True
        if found.status == "failed":
            raise shards.RunFailedError(
                f"run {self.settings.run_id} has failed ({found.error}); nothing was published."
                " A failed sharded run is not resumed: start a new run (a new Job)"
            )
        shards.check_joinable(self.settings, found)
        return False

    def _prepare(self, writer: db.Connection, found: shards.Recorded | None) -> Prepared:
        """Resolve (first shard) or take the recorded version, snapshot and threshold."""
        resolved = None
        if found is not None:
            self.settings = self.settings.model_copy(
                update={"snapshot": found.snapshot, "threshold": found.threshold}
            )
            with db.transaction(writer), writer.cursor() as cur:
                copy = run_copy.fetch(cur, self.settings.target_schema, self.settings.run_id)
            resolved = replace(found.resolution(), files=copy)
        prepared = prepare(self.settings, writer, self.timer, resolved, share=found is None)
        assert self.lineage is not None
        self.lineage.settings = self.settings
        self.lineage.ready()
        self.snapshot = prepared.plan.snapshot.label
        self.model_version = prepared.resolved.version
        self.prepared = prepared
        return prepared

    def _lock(self, control: db.Connection, prepared: Prepared) -> None:
        """Hold the (model, snapshot) lock shared, and the run's liveness lock."""
        wanted = (prepared.resolved.name, prepared.plan.snapshot.label)
        if self.locked == wanted:
            return
        with db.autocommit(control), control.cursor() as cur:
            if self.locked is not None:
                cur.execute("SELECT pg_advisory_unlock_all()")
            shards.lock_shared(cur, self.settings, *wanted)
        self.locked = wanted

    def _open(
        self, control: db.Connection, prepared: Prepared
    ) -> tuple[shards.Recorded, bool] | None:
        """Open the run (first shard) or join it; open this shard's row.

        Returns the recorded run and whether this shard still has to score, or ``None`` when
        the run was recorded with another version or snapshot than this pod prepared.
        """
        settings = self.settings
        name, snapshot = prepared.resolved.name, prepared.plan.snapshot.label
        # Two first shards open one at a time (the run id), and so do two runs of the same
        # model and snapshot (always in this order: no deadlock).
        keys = (
            "scorer-open:" + shards.run_key(settings.target_schema, settings.run_id),
            "scorer-open:" + lock_key(settings.target_schema, name, snapshot),
        )
        with db.transaction(control), control.cursor() as cur:
            for key in keys:
                cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
            found = shards.recorded(cur, settings.target_schema, settings.run_id, "FOR UPDATE")
            if found is None:
                found = self._record(cur, control, prepared)
            elif (found.version, found.snapshot) != (prepared.resolved.version, snapshot):
                return None
            if found.status != "running":
                return found, False
            shards.check_joinable(settings, found)
            cur.execute(
                f"INSERT INTO {self.shards_table} (run_id, shard, status, started_at, k8s_pod)"
                " VALUES (%s, %s, 'running', now(), %s)"
                " ON CONFLICT (run_id, shard) DO UPDATE SET status = 'running',"
                f" attempts = {self.shards_table}.attempts + 1, started_at = now(),"
                " finished_at = NULL, error = NULL, k8s_pod = EXCLUDED.k8s_pod"
                f" WHERE {self.shards_table}.status <> 'succeeded' RETURNING attempts",
                (settings.run_id, self.shard, settings.k8s_pod),
            )
            row = cur.fetchone()
        if row is not None:
            log.info("shard.started", attempt=row[0], split=found.split and found.split.as_json())
        return found, row is not None

    def _record(
        self, cur: db.Cursor, control: db.Connection, prepared: Prepared
    ) -> shards.Recorded:
        """The first shard: the run row with its resolution, split and settings."""
        settings = self.settings
        name, snapshot = prepared.resolved.name, prepared.plan.snapshot.label
        abandoned = shards.exclude_other_runs(cur, settings, name, snapshot)
        for run_id in abandoned:
            log.warning("run.abandoned", abandoned_run_id=run_id, detail="past the shard time-out")
        with self.timer.step("split"):
            split = shards.compute_split(cur, prepared.plan, settings.shards)
        record = RunRecord(control, settings, prepared.resolved, prepared.plan)
        trigger = record.open(prepared.model, datetime.now(UTC))
        if prepared.files is not None:
            if run_copy.store(cur, settings.target_schema, settings.run_id, prepared.files):
                log.info("model.shared", bytes=len(prepared.files.data))
            else:
                log.warning(
                    "model.not_shared",
                    bytes=len(prepared.files.data),
                    detail="over the copy's limit: every shard downloads it from MLflow",
                )
        cur.execute(
            f"UPDATE {self.runs_table} SET shards = %s, shard_split = %s, run_settings = %s"
            " WHERE run_id = %s",
            (
                settings.shards,
                json.dumps(split.as_json()),
                json.dumps(shards.result_settings(settings)),
                settings.run_id,
            ),
        )
        log.info("run.started", trigger=trigger, opened_by_shard=self.shard, split=split.as_json())
        self.opened_run = True
        found = shards.recorded(cur, settings.target_schema, settings.run_id)
        assert found is not None
        return found

    def _score_shard(
        self,
        prepared: Prepared,
        found: shards.Recorded,
        reader: db.Connection,
        writer: db.Connection,
    ) -> None:
        """This shard's part into its own table, committed with its shard row's success."""
        settings, timer, split = self.settings, self.timer, found.split
        assert split is not None
        kind = prepared.plan.entity_kind
        with writer.cursor() as cur:
            part = shards.condition(cur, split, self.shard, prepared.plan)
        prepared = replace(prepared, plan=features.restrict(prepared.plan, part))
        lineage = _partition(settings, prepared, found.started_at).lineage
        bounds = split.range_of(self.shard)
        has_range = bounds is not None
        table = sink.ShardTable(
            settings.target_schema,
            lineage,
            kind,
            settings.label_threshold is not None,
            (self.shard, bounds),
        )
        with db.transaction(writer):
            if has_range:
                with timer.step("score"):
                    self._score(prepared, reader, writer, table)
                with timer.step("index"), writer.cursor() as cur:
                    table.add_key(cur)
            self.shard_read = self.counts.read
            with timer.step("commit"), writer.cursor() as cur:
                now = shards.recorded(cur, settings.target_schema, settings.run_id, "FOR SHARE")
                if now is None or now.status != "running":
                    raise shards.RunFailedError(
                        f"run {settings.run_id} stopped while this shard scored"
                        f" ({now.error if now else 'its row is gone'}); nothing published"
                    )
                cur.execute(
                    f"UPDATE {self.shards_table} SET status = 'succeeded', finished_at = now(),"
                    " rows_read = %s, rows_scored = %s, rows_rejected = %s,"
                    " rows_rejected_by = %s, timings = %s, stats = %s, histogram = %s,"
                    " staging_table = %s WHERE run_id = %s AND shard = %s",
                    (
                        self.counts.read,
                        self.stats.count,
                        self.counts.rejected,
                        json.dumps(dict(self.counts.rejected_by)),
                        json.dumps(timer.timings),
                        json.dumps(self._shard_stats()),
                        shards.pack_histogram(self.stats.histogram),
                        table.name if has_range else None,
                        settings.run_id,
                        self.shard,
                    ),
                )
        log.info(
            "shard.succeeded",
            rows_read=self.counts.read,
            rows_scored=self.stats.count,
            rows_rejected=self.counts.rejected,
            table=table.name if has_range else None,
        )

    def _shard_stats(self) -> dict[str, Any]:
        stats = self.stats
        return {
            "count": stats.count,
            "total": stats.total,
            "above": stats.above,
            "extremes": stats.extremes,
            "nulls": self.feature_counts.nulls,
            "empties": self.feature_counts.empties,
        }

    def _poll(self) -> None:
        """Stop early when the run has failed (another shard's exit 2)."""
        now = time.monotonic()
        if self._control is None or now - self._last_poll < _POLL_SECONDS:
            return
        self._last_poll = now
        with db.autocommit(self._control), self._control.cursor() as cur:
            cur.execute(
                f"SELECT status, error FROM {self.runs_table} WHERE run_id = %s",
                (self.settings.run_id,),
            )
            row = cur.fetchone()
        if row is None or row[0] != "running":
            raise shards.RunFailedError(
                f"run {self.settings.run_id} stopped while this shard scored"
                f" ({row[1] if row else 'its row is gone'}); this shard stops, nothing published"
            )

    def _publish(self, prepared: Prepared, found: shards.Recorded, writer: db.Connection) -> None:
        """If every shard succeeded: the whole run, in one transaction (see the module doc)."""
        settings, timer, split = self.settings, self.timer, found.split
        assert split is not None
        with db.transaction(writer), writer.cursor() as cur:
            now = shards.recorded(cur, settings.target_schema, settings.run_id, "FOR UPDATE")
            assert now is not None
            if now.status in _PUBLISHED:
                self.outcome = "already_published"  # the shard that finished with us did it
                return
            if now.status != "running":
                raise shards.RunFailedError(f"run {settings.run_id} has failed ({now.error})")
            cur.execute(
                "SELECT shard, rows_read, rows_rejected_by, timings, stats, histogram,"
                f" staging_table FROM {self.shards_table}"
                " WHERE run_id = %s AND status = 'succeeded' ORDER BY shard",
                (settings.run_id,),
            )
            done = cur.fetchall()
            if len(done) < settings.shards:
                self.outcome = "shard_done"
                log.info(
                    "shard.waiting",
                    succeeded=[row[0] for row in done],
                    detail="the run publishes when its last shard succeeds",
                )
                return
            self._merge(done)
            self._check_scored(prepared)
            with timer.step("gate"):
                self._gate(writer, prepared)
            kind = prepared.plan.entity_kind
            parts = [
                (str(row[6]), bounds)
                for row in done
                if row[6] is not None and (bounds := split.range_of(int(row[0]))) is not None
            ]
            with timer.step("attach"):
                sink.publish_shards(cur, settings.target_schema, settings.run_id, kind, parts)
            run_copy.drop(cur, settings.target_schema, settings.run_id)
            record = RunRecord(writer, settings, prepared.resolved, prepared.plan)
            with timer.step("publish"):
                finished = record.publish(
                    self.counts, self.figures(), self._run_timings(done), self.evidence
                )
        self.outcome, self.published_run = "published", True
        log.info("run.published", finished_at=finished.isoformat(), shards=settings.shards)
        assert self.lineage is not None
        self.lineage.published(writer, self)

    @property
    def ends_run(self) -> bool:
        """This shard published the run, or failed it."""
        return self.published_run or self.failed_run

    def seconds(self) -> float:
        """Wall time of the whole run (since its first shard opened it), once joined."""
        if self.found is None:
            return super().seconds()
        return (datetime.now(UTC) - self.found.started_at).total_seconds()

    def _merge(self, done: list[tuple[Any, ...]]) -> None:
        """The whole run's counts and statistics: sums of the shards' (exact, not averages)."""
        counts, stats, feature_counts = Counts(), ScoreStats(), gate.FeatureCounts()
        for _, read, rejected_by, _, shard_stats, histogram, _ in done:
            counts.read += int(read)
            counts.rejected_by.update(Counter({k: int(v) for k, v in (rejected_by or {}).items()}))
            stats.count += int(shard_stats["count"])
            stats.total += float(shard_stats["total"])
            stats.above += int(shard_stats["above"])
            stats.extremes += int(shard_stats["extremes"])
            stats.histogram += shards.unpack_histogram(histogram)
            feature_counts.add(shard_stats["nulls"], shard_stats["empties"])
        self.counts, self.stats, self.feature_counts = counts, stats, feature_counts

    def _run_timings(self, done: list[tuple[Any, ...]]) -> dict[str, float]:
        """Per step, the slowest shard's seconds; then this shard's gate, attach, publish."""
        merged: dict[str, float] = {}
        for row in done:
            for step, seconds in (row[3] or {}).items():
                merged[step] = max(merged.get(step, 0.0), float(seconds))
        for step in ("gate", "attach"):
            if step in self.timer.timings:
                merged[step] = self.timer.timings[step]
        return merged

    def _fail(self, control: db.Connection, writer: db.Connection, failure: ScorerError) -> None:
        """Record the failure: exit 2 fails the whole run (nothing published), exit 1 only
        this shard's attempt (its retry redoes it). Best effort: the database may be gone."""
        settings = self.settings
        if self.shard_open and self.lineage is not None:
            self.lineage.shard_ended(self.shard, self, failure)  # no database needed
        if control.closed:
            return
        error = f"shard {self.shard} of {settings.shards} failed ({failure.kind}): {failure}"
        try:
            with db.transaction(control), control.cursor() as cur:
                cur.execute(
                    f"UPDATE {self.shards_table} SET status = 'failed', finished_at = now(),"
                    " error = %s, rows_read = %s, timings = %s"
                    " WHERE run_id = %s AND shard = %s AND status = 'running'",
                    (
                        str(failure),
                        self.counts.read,
                        json.dumps(self.timer.timings),
                        settings.run_id,
                        self.shard,
                    ),
                )
                permanent = failure.exit_code == 2
                if permanent and not isinstance(failure, shards.RunFailedError):
                    self.failed_run = shards.fail_run(
                        cur, settings.target_schema, settings.run_id, error, self.shard
                    )
        except (psycopg2.Error, ScorerError) as exc:  # the database went away meanwhile
            log.warning("shard.failure_not_recorded", error=f"{type(exc).__name__}: {exc}")
            return
        if self.failed_run:
            log.error("run.failed_by_shard", error=error)
            if self.lineage is not None and self.lineage.start is None:
                self._describe(writer, announce=False)
            if self.lineage is not None:
                self.lineage.failed(writer, self, failure)

    def _describe(self, writer: db.Connection, *, announce: bool) -> None:
        """Describe the joined run for its lineage; the shard that opened it sends START."""
        if self.prepared is None or self.found is None or self.lineage is None:
            return
        prepared, started = self.prepared, self.found.started_at
        partition = _partition(self.settings, prepared, started)
        trigger = trigger_of(self.settings, started)
        self.lineage.started(writer, prepared, partition, trigger, announce=announce)
