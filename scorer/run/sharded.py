"""A shard of a sharded run: open or join the run, score this shard's part, publish when last.

Each shard is one process (an Indexed Job's pod) with ``SCORER_SHARDS=n`` and its own
``SCORER_SHARD_INDEX``, under the run id all shards share. Its steps:

1. **Join.** Read the run row. If no shard has recorded the run yet, take the run's opening
   lock (the shards that start at once wait on it). The shard that opens the run resolves the
   model, picks the snapshot, computes the split, and records them with the shard count and
   the result settings (``scorer.run.shard_plan``), and with them a copy of the model's files
   (``scorer.model.run_copy``); every later shard and retry scores exactly what is recorded, and
   loads that copy instead of asking MLflow.
2. **Score.** In one transaction on its own connection: load this shard's part into its own
   table (with the run's lineage defaults and a CHECK of its id range), build its primary key,
   and mark its ``scoring_run_shards`` row succeeded with its counts, timings, score
   statistics and per-feature drift evidence (counted against the gate's reference run as it
   stood when the shard started scoring; ``scorer.run.drift``). A killed shard leaves
   nothing; its retry starts afresh and replaces only its own output. Every few seconds it
   checks that the run still stands, and stops if it failed.
3. **Publish.** Lock the run row (``FOR UPDATE``, which serializes the shards that finish at
   once) and, if every shard has succeeded, publish the whole run in one transaction: the
   statistics and the per-feature drift merged exactly from the shards' counts and histograms
   (shards binned against different reference runs fail the run), the checks and the
   quality gate on the whole run, the shards' tables attached as range partitions of the run's
   table, that attached as the run's partition, and the run row marked succeeded. Readers see
   no shard's rows before this commits.

A shard failing with exit 2 fails the run in the same transaction that drops the shards'
tables: nothing is published, the run row names the shard and why (and, when the publishing
shard's quality gate failed it, what the gate saw), and the other shards stop at their next
check. A shard failing with exit 1 only marks its own row; its retry redoes it.

Lineage (``scorer.lineage.recorder``): the shard that opens the run sends the run's OpenLineage
START; every shard sends its own START when it starts scoring and its COMPLETE or FAIL when its part
is committed or it fails; the shard that publishes (or fails) the run records it in MLflow
and sends the run's COMPLETE (or FAIL).
"""

from __future__ import annotations

import time
from contextlib import closing
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import psycopg2
import structlog

from scorer.config import RunSettings
from scorer.errors import ScorerError
from scorer.failures import classify
from scorer.io import features, sink
from scorer.lineage.recorder import Lineage
from scorer.model import run_copy
from scorer.postgres import db, locks, schema, sessions
from scorer.run import shard_plan, shard_record, steps
from scorer.run.prepare import Prepared, partition_for, prepare
from scorer.run.progress import RunProgress
from scorer.run.record import RunRecord, run_status, trigger_of

log = structlog.get_logger("scorer")

_POLL_SECONDS = 2.0
_PUBLISHED = ("succeeded", "pruned")


@dataclass
class ShardRun:
    """One shard's run: what it scored itself, and (when it publishes) the whole run."""

    progress: RunProgress
    found: shard_plan.Recorded | None = None
    prepared: Prepared | None = None
    locked: tuple[str, str] | None = None
    opened_run: bool = False  # this shard recorded the run (and announces its START)
    shard_open: bool = False  # this shard's START was sent and its end not yet
    control: db.Connection | None = None
    last_poll: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.progress.ends_run = False  # until this shard publishes or fails the run

    @property
    def settings(self) -> RunSettings:
        return self.progress.settings

    @property
    def shard(self) -> int:
        return self.settings.shard

    @property
    def key(self) -> shard_record.ShardKey:
        """This shard's row."""
        return shard_record.ShardKey(self.settings.target_schema, self.settings.run_id, self.shard)

    @property
    def lineage(self) -> Lineage:
        assert self.progress.lineage is not None  # configured first thing in execute
        return self.progress.lineage

    def execute(self) -> None:
        """Join (or open) the run, score this shard's part, publish if it is the last."""
        settings = self.settings
        structlog.contextvars.bind_contextvars(shard=self.shard, shards=settings.shards)
        url = settings.database_url.get_secret_value()
        self.progress.lineage = Lineage.configure(settings)
        with (
            closing(db.connect(url)) as control,
            closing(db.connect(url)) as writer,
            closing(db.connect(url)) as reader,
        ):
            self.control = control
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
        settings, timer = self.settings, self.progress.timer
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
                    found = shard_plan.recorded(cur, settings.target_schema, settings.run_id)
                continue
            found, todo = opened
            break
        else:
            raise ScorerError("the run's recorded resolution kept changing; retry")
        if opening:
            key = locks.opening(settings.target_schema, settings.run_id)
            with db.autocommit(control), control.cursor() as cur:
                locks.release(cur, key)
        if self._settled(found):
            return
        assert found.split is not None  # a sharded run records its split
        self.found = found
        self.progress.run_started_at = found.started_at
        self._describe(writer, announce=self.opened_run)
        if todo:
            self.lineage.shard_started(self.shard)
            self.shard_open = True
            self._score_shard(prepared, found, reader, writer)
            self.shard_open = False
            self.lineage.shard_ended(self.shard, self.progress.lineage_outcome())
        else:
            log.info("shard.already_succeeded", detail="this shard's part is in; publishing")
        self._publish(prepared, found, writer)

    def _wait_for_opener(self, control: db.Connection) -> shard_plan.Recorded | None:
        """The run as recorded; if no shard has recorded it yet, wait for the one that is
        opening it. None: this shard opens the run, and holds the opening lock until then."""
        schema, run_id = self.settings.target_schema, self.settings.run_id
        with db.autocommit(control), control.cursor() as cur:
            found = shard_plan.recorded(cur, schema, run_id)
            if found is not None:
                return found
            key = locks.opening(schema, run_id)
            locks.acquire(cur, key)
            found = shard_plan.recorded(cur, schema, run_id)
            if found is not None:
                locks.release(cur, key)
        return found

    def _settled(self, found: shard_plan.Recorded) -> bool:
        """A run already published needs nothing; a failed one refuses; any other must fit."""
        if found.status in _PUBLISHED:
            self.progress.outcome = "already_published"
            self.progress.snapshot = found.snapshot
            log.info(
                "run.already_succeeded",
                detail="this run id already published; nothing scored or written",
                snapshot=found.snapshot,
            )
            return True
        if found.status == "failed":
            raise shard_plan.RunFailedError(
                f"run {self.settings.run_id} has failed ({found.error}); nothing was published."
                " A failed sharded run is not resumed: start a new run (a new Job)"
            )
        shard_plan.check_joinable(self.settings, found)
        return False

    def _prepare(self, writer: db.Connection, found: shard_plan.Recorded | None) -> Prepared:
        """Resolve (first shard) or take the recorded version, snapshot and threshold."""
        resolved = None
        if found is not None:
            self.progress.settings = self.settings.model_copy(
                update={"snapshot": found.snapshot, "threshold": found.threshold}
            )
            with db.transaction(writer), writer.cursor() as cur:
                copy = run_copy.fetch(cur, self.settings.target_schema, self.settings.run_id)
            resolved = replace(found.resolution(), files=copy)
        prepared = prepare(
            self.settings, writer, self.progress.timer, resolved, share=found is None
        )
        self.lineage.settings = self.settings
        self.lineage.ready()
        self.progress.snapshot = prepared.plan.snapshot.label
        self.progress.model_version = prepared.resolved.version
        self.prepared = prepared
        return prepared

    def _lock(self, control: db.Connection, prepared: Prepared) -> None:
        """Hold the (model, snapshot) lock shared, and the run's liveness lock."""
        wanted = (prepared.resolved.name, prepared.plan.snapshot.label)
        if self.locked == wanted:
            return
        with db.autocommit(control), control.cursor() as cur:
            if self.locked is not None:
                locks.release_all(cur)
            shard_plan.lock_shared(cur, self.settings, *wanted)
        self.locked = wanted

    def _open(
        self, control: db.Connection, prepared: Prepared
    ) -> tuple[shard_plan.Recorded, bool] | None:
        """Open the run (first shard) or join it; open this shard's row.

        Returns the recorded run and whether this shard still has to score, or ``None`` when
        the run was recorded with another version or snapshot than this pod prepared.
        """
        settings = self.settings
        name, snapshot = prepared.resolved.name, prepared.plan.snapshot.label
        # Two first shards open one at a time (the run id), and so do two runs of the same
        # model and snapshot (always in this order: no deadlock).
        keys = (
            locks.opening_serial(locks.live_run(settings.target_schema, settings.run_id)),
            locks.opening_serial(locks.run(settings.target_schema, name, snapshot)),
        )
        with db.transaction(control), control.cursor() as cur:
            for key in keys:
                locks.acquire_for_transaction(cur, key)
            found = shard_plan.recorded(cur, settings.target_schema, settings.run_id, "FOR UPDATE")
            if found is None:
                found = self._record(cur, control, prepared)
            elif (found.version, found.snapshot) != (prepared.resolved.version, snapshot):
                return None
            if found.status != "running":
                return found, False
            shard_plan.check_joinable(settings, found)
            attempt = shard_record.open_shard(cur, self.key, settings.k8s_pod)
        if attempt is not None:
            log.info("shard.started", attempt=attempt, split=found.split and found.split.as_json())
        return found, attempt is not None

    def _record(
        self, cur: db.Cursor, control: db.Connection, prepared: Prepared
    ) -> shard_plan.Recorded:
        """The first shard: the run row with its resolution, split and settings."""
        settings = self.settings
        name, snapshot = prepared.resolved.name, prepared.plan.snapshot.label
        abandoned = shard_plan.exclude_other_runs(cur, settings, name, snapshot)
        for run_id in abandoned:
            log.warning("run.abandoned", abandoned_run_id=run_id, detail="past the shard time-out")
        with self.progress.timer.step("split"):
            split = shard_plan.compute_split(cur, prepared.plan, settings.shards)
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
        shard_plan.record_split(cur, settings, split)
        log.info("run.started", trigger=trigger, opened_by_shard=self.shard, split=split.as_json())
        self.opened_run = True
        found = shard_plan.recorded(cur, settings.target_schema, settings.run_id)
        assert found is not None
        return found

    def _score_shard(
        self,
        prepared: Prepared,
        found: shard_plan.Recorded,
        reader: db.Connection,
        writer: db.Connection,
    ) -> None:
        """This shard's part into its own table, committed with its shard row's success."""
        settings, timer, split = self.settings, self.progress.timer, found.split
        assert split is not None
        kind = prepared.plan.entity_kind
        with writer.cursor() as cur:
            part = shard_plan.condition(cur, split, self.shard, prepared.plan)
        prepared = replace(prepared, plan=features.restrict(prepared.plan, part))
        lineage = partition_for(settings, prepared, found.started_at).lineage
        bounds = split.range_of(self.shard)
        has_range = bounds is not None
        table = sink.ShardTable(
            settings.target_schema,
            lineage,
            kind,
            settings.label_threshold is not None,
            (self.shard, bounds),
        )
        if settings.reasons:
            table.carrying_reasons()
        with db.transaction(writer):
            if has_range:
                with timer.step("score"):
                    steps.score(self.progress, prepared, reader, writer, table, poll=self._poll)
                with timer.step("index"), writer.cursor() as cur:
                    table.add_key(cur)
            with timer.step("commit"), writer.cursor() as cur:
                now = shard_plan.recorded(cur, settings.target_schema, settings.run_id, "FOR SHARE")
                if now is None or now.status != "running":
                    raise shard_plan.RunFailedError(
                        f"run {settings.run_id} stopped while this shard scored"
                        f" ({now.error if now else 'its row is gone'}); nothing published"
                    )
                result = shard_record.ShardResult(
                    self.progress.counts,
                    self.progress.stats,
                    self.progress.feature_counts,
                    timer.timings,
                    table.name if has_range else None,
                    self.progress.drift if has_range else None,
                )
                shard_record.succeed(cur, self.key, result)
        log.info(
            "shard.succeeded",
            rows_read=self.progress.counts.read,
            rows_scored=self.progress.stats.count,
            rows_rejected=self.progress.counts.rejected,
            table=table.name if has_range else None,
        )

    def _poll(self) -> None:
        """Stop early when the run has failed (another shard's exit 2)."""
        now = time.monotonic()
        if self.control is None or now - self.last_poll < _POLL_SECONDS:
            return
        self.last_poll = now
        with db.autocommit(self.control), self.control.cursor() as cur:
            status = run_status(cur, self.settings.target_schema, self.settings.run_id)
        if status is None or status[0] != "running":
            raise shard_plan.RunFailedError(
                f"run {self.settings.run_id} stopped while this shard scored"
                f" ({status[1] if status else 'its row is gone'}); this shard stops, nothing"
                " published"
            )

    def _publish(
        self, prepared: Prepared, found: shard_plan.Recorded, writer: db.Connection
    ) -> None:
        """If every shard succeeded: the whole run, in one transaction (see the module doc)."""
        settings, timer, split = self.settings, self.progress.timer, found.split
        assert split is not None
        with db.transaction(writer), writer.cursor() as cur:
            now = shard_plan.recorded(cur, settings.target_schema, settings.run_id, "FOR UPDATE")
            assert now is not None
            if now.status in _PUBLISHED:
                self.progress.outcome = (
                    "already_published"  # the shard that finished with us did it
                )
                return
            if now.status != "running":
                raise shard_plan.RunFailedError(f"run {settings.run_id} has failed ({now.error})")
            done = shard_record.succeeded(cur, settings.target_schema, settings.run_id)
            if len(done) < settings.shards:
                self.progress.outcome = "shard_done"
                log.info(
                    "shard.waiting",
                    succeeded=[row.shard for row in done],
                    detail="the run publishes when its last shard succeeds",
                )
                return
            run = self.progress
            run.counts, run.stats, run.feature_counts = shard_record.merged(done)
            run.drift = shard_record.merged_drift(done)
            steps.check_scored(self.progress, prepared)
            with timer.step("gate"):
                steps.check_gate(self.progress, writer, prepared)
            kind = prepared.plan.entity_kind
            parts = [
                (row.staging_table, bounds)
                for row in done
                if row.staging_table is not None and (bounds := split.range_of(row.shard))
            ]
            with timer.step("attach"):
                sink.publish_shards(cur, settings.target_schema, settings.run_id, kind, parts)
            run_copy.drop(cur, settings.target_schema, settings.run_id)
            record = RunRecord(writer, settings, prepared.resolved, prepared.plan)
            with timer.step("publish"):
                finished = record.publish(
                    self.progress.counts,
                    self.progress.figures(),
                    self._run_timings(done),
                    self.progress.evidence,
                )
        self.progress.outcome = "published"
        self.progress.ends_run = True
        log.info("run.published", finished_at=finished.isoformat(), shards=settings.shards)
        self.lineage.published(writer, self.progress.lineage_outcome())

    def _run_timings(self, done: list[shard_record.ShardRow]) -> dict[str, float]:
        """Per step, the slowest shard's seconds; then this shard's gate, attach, publish."""
        merged: dict[str, float] = {}
        for row in done:
            for step, seconds in row.timings.items():
                merged[step] = max(merged.get(step, 0.0), seconds)
        for step in ("gate", "attach"):
            if step in self.progress.timer.timings:
                merged[step] = self.progress.timer.timings[step]
        return merged

    def _fail(self, control: db.Connection, writer: db.Connection, failure: ScorerError) -> None:
        """Record the failure: exit 2 fails the whole run (nothing published), exit 1 only
        this shard's attempt (its retry redoes it). Best effort: the database may be gone."""
        settings = self.settings
        if self.shard_open:
            outcome = self.progress.lineage_outcome(failure)
            self.lineage.shard_ended(self.shard, outcome)  # no database needed
        if control.closed:
            return
        error = f"shard {self.shard} of {settings.shards} failed ({failure.kind}): {failure}"
        failed_run = False  # this shard failed the whole run (exit 2)
        try:
            with db.transaction(control), control.cursor() as cur:
                shard_record.fail(
                    cur,
                    self.key,
                    str(failure),
                    self.progress.counts.read,
                    self.progress.timer.timings,
                )
                permanent = failure.exit_code == 2
                if permanent and not isinstance(failure, shard_plan.RunFailedError):
                    failed_run = shard_plan.fail_run(
                        cur,
                        settings.target_schema,
                        settings.run_id,
                        error,
                        self.shard,
                        evidence=self.progress.evidence,
                    )
        except (psycopg2.Error, ScorerError) as exc:  # the database went away meanwhile
            log.warning("shard.failure_not_recorded", error=f"{type(exc).__name__}: {exc}")
            return
        if failed_run:
            self.progress.ends_run = True
            log.error("run.failed_by_shard", error=error)
            if self.lineage.start is None:
                self._describe(writer, announce=False)
            self.lineage.failed(writer, self.progress.lineage_outcome(failure))

    def _describe(self, writer: db.Connection, *, announce: bool) -> None:
        """Describe the joined run for its lineage; the shard that opened it sends START."""
        if self.prepared is None or self.found is None:
            return
        prepared, started = self.prepared, self.found.started_at
        trigger = trigger_of(self.settings, started)
        resolved, plan = prepared.resolved, prepared.plan
        self.lineage.started(writer, resolved, plan, started, trigger, announce=announce)
