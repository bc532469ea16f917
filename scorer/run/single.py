"""One scoring run: resolve, check, stream, predict, write, publish."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg2
import structlog

from scorer.config import RunSettings
from scorer.errors import (
    EmptyRelationError,
    InternalError,
    ModelOutputError,
    QualityGateError,
    RejectedRowsError,
    ScorerError,
    TerminatedError,
    TerminationSignal,
)
from scorer.io import features, sink, workers
from scorer.lineage.recorder import Lineage
from scorer.model import registry, run_copy
from scorer.model.flavors import LoadedModel
from scorer.postgres import db, privileges, schema, sessions, wire
from scorer.run import gate, metrics, shard_record
from scorer.run.record import Counts, Evidence, RunRecord
from scorer.run.statistics import ScoreStats, figures, label

log = structlog.get_logger("scorer")

_PROGRESS_EVERY_SECONDS = 5.0


@dataclass
class Timer:
    """Named wall-clock timings of the run's steps, in seconds."""

    timings: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time the block under ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - start, 3)


@dataclass(frozen=True)
class Prepared:
    """Everything verified before the first write."""

    resolved: registry.ResolvedModel
    model: LoadedModel
    plan: features.FeaturePlan
    files: run_copy.ModelFiles | None = None  # a sharded run's download, for its other shards


def prepare(
    settings: RunSettings,
    writer: db.Connection,
    timer: Timer,
    recorded: registry.ResolvedModel | None = None,
    share: bool = False,
) -> Prepared:
    """Resolve and load the model, check the role's privileges, the schema and the feature
    relation. Writes nothing.

    ``recorded``: the version a sharded run recorded, scored as it is (no resolution), from
    the run's copy of its files when it has one (without MLflow); ``share``: keep the
    downloaded files (``Prepared.files``) for the run's other shard_record.
    """
    with timer.step("resolve"):
        resolved = registry.resolve(settings) if recorded is None else recorded
    structlog.contextvars.bind_contextvars(model_version=resolved.version)
    log.info(
        "model.resolved" if recorded is None else "model.recorded",
        selector=resolved.selector,
        mlflow_run_id=resolved.mlflow_run_id,
        source=resolved.source,
        model_id=resolved.model_id,
        aliases=list(resolved.aliases),
        stage=resolved.stage,
    )
    with timer.step("schema"), db.transaction(writer):
        privileges.require(writer, settings.target_schema, "run", settings.features)
        schema.require_migrated(writer, settings.target_schema)
    with timer.step("load"):
        model, files = registry.load(resolved, settings, share)
    shared = resolved.files or files
    log.info(
        "model.loaded",
        loaded_from="registry" if resolved.files is None else "run copy",
        files_sha256=shared.sha256 if shared else None,
        flavor=model.flavor,
        method=model.method,
        score_kind=model.score_kind,
        positive_class=model.positive_class,
        features=len(model.inputs),
        predict_threads=model.threads,
    )
    with timer.step("check"), db.transaction(writer):
        source = features.Source(
            settings.features,
            settings.entity_column,
            settings.snapshot_column,
            settings.snapshot,
            settings.max_snapshot_age,
        )
        plan = features.plan(writer, source, model.inputs, model.dtype)
    log.info(
        "features.checked",
        relation=str(plan.relation),
        columns=len(plan.inputs),
        entity_type=plan.entity_kind,
        snapshot=plan.snapshot.label,
        snapshot_column=plan.snapshot.column,
    )
    # Imports and the model are now loaded for good: move them out of the garbage collector's
    # sight, so neither collections while scoring nor the one at exit traverse them again.
    gc.freeze()
    return Prepared(resolved, model, plan, files)


def check(settings: RunSettings) -> int:
    """Everything ``run`` verifies; writes nothing."""
    timer = Timer()
    Lineage.configure(settings).ready()  # lineage: the OpenLineage configuration
    url = settings.database_url.get_secret_value()
    with closing(db.connect(url)) as writer, closing(db.connect(url)) as other:
        sessions.require_session(writer, other)  # a run would refuse this pooler: so does check
        prepare(settings, writer, timer)
    log.info("check.passed", timings=timer.timings)
    return 0


def run(settings: RunSettings) -> int:
    """Score the relation and publish atomically; return the exit code.

    Every path ends with one canonical summary line, ``run.succeeded`` or ``run.failed``; an
    internal error (a bug) logs its traceback just before.
    """
    if settings.sharded:
        from scorer.run.sharded import ShardState  # noqa: PLC0415 - only a sharded run needs it

        state: _RunState = ShardState(settings)
    else:
        state = _RunState(settings)
    try:
        state.execute()
    except BaseException as exc:  # every failure, even SIGTERM's, ends in the summary line
        failure = classify(exc)
        if isinstance(failure, InternalError):
            log.exception("run.internal_error", error=str(failure), exc_info=exc)
        state.pushed = metrics.push(state, failure)  # best effort: the exit code stands
        state.summary("run.failed", failure)
        return failure.exit_code
    state.pushed = metrics.push(state)
    state.summary("run.succeeded")
    return 0


@dataclass
class _RunState:
    """One run's settings and everything it measures along the way."""

    settings: RunSettings
    timer: Timer = field(default_factory=Timer)
    counts: Counts = field(default_factory=Counts)
    stats: ScoreStats = field(default_factory=ScoreStats)
    feature_counts: gate.FeatureCounts = field(default_factory=gate.FeatureCounts)
    evidence: Evidence = field(default_factory=Evidence)
    verdict: gate.Verdict | None = None
    started: float = field(default_factory=time.perf_counter)
    snapshot: str | None = None
    model_version: int | None = None
    outcome: str = "published"  # or "already_published": a rerun of a run id that succeeded
    lineage: Lineage | None = None  # MLflow record and OpenLineage events (best effort)
    pushed: dict[str, object] | None = None  # how the metrics push went (scorer.run.metrics)

    def execute(self) -> None:
        """Prepare, lock, open the run row, score in one transaction, publish."""
        settings, timer = self.settings, self.timer
        url = settings.database_url.get_secret_value()
        self.lineage = Lineage.configure(settings)  # lineage: checked before any write
        with closing(db.connect(url)) as writer, closing(db.connect(url)) as reader:
            sessions.require_session(writer, reader)  # the lock below must hold: no pooler
            prepared = prepare(settings, writer, timer)
            self.lineage.ready()  # lineage: a bad OpenLineage configuration is exit 2 here
            self.snapshot = prepared.plan.snapshot.label
            self.model_version = prepared.resolved.version
            record = RunRecord(writer, settings, prepared.resolved, prepared.plan)
            with db.autocommit(writer):
                record.lock()
                with db.transaction(writer), writer.cursor() as cur:
                    shard_record.guard_unsharded(
                        cur, settings, prepared.resolved.name, self.snapshot
                    )
                if record.status() in ("succeeded", "pruned"):  # published (and maybe pruned)
                    self.outcome = "already_published"
                    log.info(
                        "run.already_succeeded",
                        detail="this run id already published; nothing scored or written",
                        snapshot=self.snapshot,
                    )
                    return
                started_at = datetime.now(UTC)
                trigger = record.open(prepared.model, started_at)
            log.info("run.started", trigger=trigger)
            partition = _partition(settings, prepared, started_at)
            self.lineage.started(writer, prepared, partition, trigger)  # lineage: START
            try:
                # The one publishing transaction: readers see all of the run or none of it.
                with db.transaction(writer):
                    with timer.step("score"):
                        self._score(prepared, reader, writer, partition)
                    self._check_scored(prepared)
                    with timer.step("gate"):
                        self._gate(writer, prepared)
                    with timer.step("index"), writer.cursor() as cur:
                        partition.attach(cur)
                    with timer.step("publish"):
                        finished = record.publish(
                            self.counts, self.figures(), timer.timings, self.evidence
                        )
            except BaseException as exc:
                failure = classify(exc)
                record.fail(str(failure), self.counts, timer.timings, self.evidence)
                self.lineage.failed(writer, self, failure)  # lineage: FAILED MLflow run, FAIL
                raise failure from exc
            log.info("run.published", finished_at=finished.isoformat())
            self.lineage.published(writer, self)  # lineage: the MLflow record, COMPLETE

    def _score(
        self,
        prepared: Prepared,
        reader: db.Connection,
        writer: db.Connection,
        partition: sink.RunPartition,
    ) -> None:
        """Create the run's table, then stream, predict and COPY into it (in the caller's
        transaction); reading and writing run on threads of their own."""
        settings, counts, plan = self.settings, self.counts, prepared.plan
        threshold = settings.label_threshold
        with writer.cursor() as cur:
            partition.create(cur)

        def copy_all(payloads: Iterable[bytes]) -> None:
            with writer.cursor() as cur:
                sink.write(cur, partition.copy_statement, payloads)

        with workers.consumed(copy_all, writer.cancel, name="scorer-writer") as send:
            begin = last = time.perf_counter()
            for chunk in features.stream(reader, plan, settings.chunk_rows):
                counts.read += chunk.read
                counts.rejected_by.update(chunk.rejected_by)
                self.feature_counts.add(chunk.nulls, chunk.empties)
                if chunk.ids.size:
                    scores = prepared.model.predict(chunk, plan)
                    labels = None if threshold is None else label(scores, threshold)
                    self.stats.add(scores, labels)
                    send(wire.encode_predictions(chunk.ids, scores, labels))
                now = time.perf_counter()
                self._poll()
                if now - last >= _PROGRESS_EVERY_SECONDS or counts.read == chunk.read:
                    log.info(
                        "batch.scored",
                        rows=counts.read,
                        rejected=counts.rejected,
                        rows_per_s=round(counts.read / max(now - begin, 1e-9)),
                    )
                    last = now

    def _poll(self) -> None:
        """Called after each chunk (a shard checks here whether its run still stands)."""

    def _check_scored(self, prepared: Prepared) -> None:
        """Refuse to publish what the scorer cannot stand behind."""
        settings, counts = self.settings, self.counts
        where = settings.features_table
        if prepared.plan.snapshot.column is not None:
            where += f" (snapshot {self.snapshot})"
        if counts.read == 0:
            raise EmptyRelationError(
                f"feature relation {where} has no rows; nothing published, the previous "
                "predictions stay (check the upstream load)"
            )
        _check_rejected(settings, counts)
        if self.stats.count == 0:
            raise RejectedRowsError(
                f"all {counts.read} rows of {where} were rejected ({_reasons(counts)}); "
                "nothing published"
            )
        if prepared.model.score_kind == "probability" and self.stats.all_extreme:
            raise ModelOutputError(
                f"the model's {prepared.model.method} returned only 0 and 1: labels, not "
                "probabilities; log it so that it returns probabilities, e.g. "
                'mlflow.pyfunc.log_model(..., pyfunc_predict_fn="predict_proba")'
            )

    def _gate(self, writer: db.Connection, prepared: Prepared) -> None:
        """Record the evidence and compare it with the previous published run (see
        ``scorer.run.gate``); past a limit, refuse to publish unless overridden."""
        settings = self.settings
        probabilities = prepared.model.score_kind == "probability"
        histogram = gate.coarse_histogram(self.stats.histogram) if probabilities else None
        stats = self.feature_counts.shares(self.stats.count)
        meaning = gate.Meaning(
            prepared.resolved.name,
            settings.features_table,
            prepared.model.score_kind,
            prepared.model.positive_class,
        )
        reference = gate.previous(writer, settings.target_schema, meaning, settings.run_id)
        limits = gate.Limits(
            settings.max_score_psi, settings.min_rows_ratio, settings.max_null_share_increase
        )
        observed = gate.Observed(self.stats.count, histogram, stats)
        verdict = gate.evaluate(reference, observed, limits, settings.quality_override)
        self.verdict = verdict
        self.evidence = Evidence(
            None if histogram is None else histogram.tolist(),
            stats,
            verdict.as_json(),
            settings.quality_override,
        )
        for check in verdict.warnings:
            log.warning("gate.warning", check=check.check, value=check.value, warn=check.warn)
        if isinstance(reference, gate.NoReference):
            log.info("gate.no_reference", detail=reference.reason)
        failed = "; ".join(check.describe() for check in verdict.failed)
        if failed and settings.quality_override is not None:
            log.warning("gate.overridden", failed=failed, reason=settings.quality_override)
        elif failed:
            raise QualityGateError(
                f"quality gate: {failed} against run {verdict.reference_run_id}; nothing "
                "published. If the change is deliberate (e.g. a new model version), let this "
                "run through with SCORER_QUALITY_OVERRIDE=<reason>"
            )

    @property
    def ends_run(self) -> bool:
        """This process published or failed the run (what ``metrics.push`` reports)."""
        return self.outcome != "already_published"

    def seconds(self) -> float:
        """Wall time of the run so far."""
        return time.perf_counter() - self.started

    def figures(self) -> dict[str, float | None]:
        """The score statistics recorded on the run row and in the summary line."""
        probabilities = self.settings.score_kind == "probability"
        return figures(self.stats, probabilities, self.settings.label_threshold is not None)

    def summary(self, event: str, failure: ScorerError | None = None) -> None:
        """The one canonical line that sums the run up."""
        elapsed = time.perf_counter() - self.started
        counts = self.counts
        fields: dict[str, Any] = {
            "status": "failed" if failure else "succeeded",
            "outcome": "failed" if failure else self.outcome,
            "snapshot": self.snapshot,
            "features": self.settings.features_table,
            "rows_read": counts.read,
            "rows_scored": self.stats.count,
            "rows_rejected": counts.rejected,
            "rows_rejected_by": dict(counts.rejected_by),
            **self.figures(),
            "threshold": self.settings.label_threshold,
            "seconds": round(elapsed, 3),
            "rows_per_s": round(counts.read / elapsed) if elapsed > 0 else None,
            "timings": self.timer.timings,
            "quality": None if self.verdict is None else self.verdict.as_json(),
            "lineage": None if self.lineage is None else self.lineage.summary(),
            "metrics": self.pushed,
        }
        if failure is None:
            log.info(event, **fields)
        else:
            kind, code = failure.kind, failure.exit_code
            log.error(event, error=str(failure), kind=kind, exit_code=code, **fields)


def _partition(
    settings: RunSettings, prepared: Prepared, started_at: datetime
) -> sink.RunPartition:
    """The table this run loads, with its lineage constants."""
    lineage = sink.Lineage(
        run_id=settings.run_id,
        model_name=prepared.resolved.name,
        model_version=prepared.resolved.version,
        snapshot=prepared.plan.snapshot.label,
        scored_at=started_at,
    )
    labelled = settings.label_threshold is not None
    return sink.RunPartition(settings.target_schema, lineage, prepared.plan.entity_kind, labelled)


def _check_rejected(settings: RunSettings, counts: Counts) -> None:
    ratio = counts.rejected / counts.read if counts.read else 0.0
    if ratio > settings.max_rejected_ratio:
        raise RejectedRowsError(
            f"{counts.rejected} of {counts.read} rows rejected ({ratio:.2%}: {_reasons(counts)}), "
            f"more than SCORER_MAX_REJECTED_RATIO={settings.max_rejected_ratio:g}; "
            "nothing published"
        )


def _reasons(counts: Counts) -> str:
    """Why rows were rejected, by column: ``contract: 1000 rows not a number``."""
    parts = []
    for key, count in counts.rejected_by.most_common():
        column, _, reason = key.partition(": ")
        parts.append(f"{column}: {count} rows {reason}")
    return ", ".join(parts)


def classify(exc: BaseException) -> ScorerError:
    """Map any exception from a run to a ScorerError with the right exit code.

    Database errors are classified by ``db.classify``, MLflow errors by
    ``registry.registry_errors``; anything else is an ``InternalError`` (a bug, exit 2). The
    original exception stays chained as the ``__cause__``.
    """
    from mlflow.exceptions import MlflowException  # noqa: PLC0415 - keep start-up light

    if isinstance(exc, ScorerError):
        return exc
    failure: ScorerError
    if isinstance(exc, TerminationSignal):
        failure = TerminatedError(str(exc))
    elif isinstance(exc, KeyboardInterrupt):
        failure = TerminatedError("interrupted")
    elif isinstance(exc, psycopg2.Error):
        failure = db.classify(exc)
    elif isinstance(exc, MlflowException):  # raised outside registry_errors, e.g. on load
        try:
            with registry.registry_errors("model registry"):
                raise exc
        except ScorerError as translated:
            failure = translated
    else:
        failure = InternalError(f"internal error: {type(exc).__name__}: {exc}".strip())
    failure.__cause__ = exc
    return failure
