"""An unsharded run: prepare, lock, open the run row, score in one transaction, publish."""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from scorer.failures import classify
from scorer.lineage.recorder import Lineage
from scorer.postgres import db, sessions
from scorer.run import shard_plan, steps
from scorer.run.prepare import partition_for, prepare
from scorer.run.progress import RunProgress
from scorer.run.record import RunRecord

log = structlog.get_logger("scorer")


@dataclass
class SingleRun:
    """One process scores the whole relation and publishes it."""

    progress: RunProgress

    def execute(self) -> None:
        """Prepare, lock, open the run row, score in one transaction, publish."""
        run = self.progress
        settings, timer = run.settings, run.timer
        url = settings.database_url.get_secret_value()
        run.lineage = lineage = Lineage.configure(settings)  # lineage: checked before any write
        with closing(db.connect(url)) as writer, closing(db.connect(url)) as reader:
            sessions.require_session(writer, reader)  # the lock below must hold: no pooler
            prepared = prepare(settings, writer, timer)
            lineage.ready()  # lineage: a bad OpenLineage configuration is exit 2 here
            run.snapshot = prepared.plan.snapshot.label
            run.model_version = prepared.resolved.version
            record = RunRecord(writer, settings, prepared.resolved, prepared.plan)
            with db.autocommit(writer):
                record.lock()
                with db.transaction(writer), writer.cursor() as cur:
                    shard_plan.guard_unsharded(cur, settings, prepared.resolved.name, run.snapshot)
                if record.status() in ("succeeded", "pruned"):  # published (and maybe pruned)
                    run.outcome = "already_published"
                    log.info(
                        "run.already_succeeded",
                        detail="this run id already published; nothing scored or written",
                        snapshot=run.snapshot,
                    )
                    return
                started_at = datetime.now(UTC)
                trigger = record.open(prepared.model, started_at)
            log.info("run.started", trigger=trigger)
            partition = partition_for(settings, prepared, started_at)
            lineage.started(writer, prepared.resolved, prepared.plan, started_at, trigger)
            try:
                # The one publishing transaction: readers see all of the run or none of it.
                with db.transaction(writer):
                    with timer.step("score"):
                        steps.score(run, prepared, reader, writer, partition)
                    steps.check_scored(run, prepared)
                    with timer.step("gate"):
                        steps.check_gate(run, writer, prepared)
                    with timer.step("index"), writer.cursor() as cur:
                        partition.attach(cur)
                    with timer.step("publish"):
                        finished = record.publish(
                            run.counts, run.figures(), timer.timings, run.evidence
                        )
            except BaseException as exc:
                failure = classify(exc)
                record.fail(str(failure), run.counts, timer.timings, run.evidence)
                lineage.failed(writer, run.lineage_outcome(failure))  # FAILED MLflow run, FAIL
                raise failure from exc
            log.info("run.published", finished_at=finished.isoformat())
            lineage.published(writer, run.lineage_outcome())  # the MLflow record, COMPLETE
