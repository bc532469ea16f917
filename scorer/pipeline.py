"""One scoring run: resolve, check, stream, predict, write, publish."""

from __future__ import annotations

import gc
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg2
import structlog

from scorer import db, features, registry, schema, sink
from scorer.config import RunSettings
from scorer.errors import (
    PermanentError,
    RejectedRowsError,
    RetryableError,
    ScorerError,
    TerminatedError,
)
from scorer.runs import Counts, RunRecord
from scorer.stats import ScoreStats, label

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
    model: registry.LoadedModel
    plan: features.FeaturePlan


def prepare(settings: RunSettings, writer: Any, timer: Timer) -> Prepared:
    """Resolve and load the model, check the schema and the feature relation. Writes nothing."""
    with timer.step("resolve"):
        resolved = registry.resolve(settings)
    structlog.contextvars.bind_contextvars(model_version=resolved.version)
    log.info(
        "model.resolved",
        selector=resolved.selector,
        mlflow_run_id=resolved.mlflow_run_id,
        source=resolved.source,
        model_id=resolved.model_id,
        aliases=list(resolved.aliases),
        stage=resolved.stage,
    )
    with timer.step("schema"):
        schema.require_migrated(writer, settings.target_schema)
    with timer.step("load"):
        model = registry.load(resolved, settings.tracking_uri)
    log.info(
        "model.loaded",
        flavor=model.flavor,
        features=len(model.feature_names),
        predict_threads=model.threads,
    )
    with timer.step("check"):
        plan = features.plan(writer, settings.features, settings.entity_column, model.feature_names)
    log.info("features.checked", relation=str(plan.relation), columns=len(plan.features))
    # Imports and the model are now loaded for good: move them out of the garbage collector's
    # sight, so neither collections while scoring nor the one at exit traverse them again.
    gc.freeze()
    return Prepared(resolved, model, plan)


def check(settings: RunSettings) -> int:
    """Everything ``run`` verifies; writes nothing."""
    timer = Timer()
    with closing(db.connect(settings.database_url.get_secret_value())) as writer:
        prepare(settings, writer, timer)
    log.info("check.passed", timings=timer.timings)
    return 0


def run(settings: RunSettings) -> int:
    """Score the relation and publish atomically; return the exit code.

    Every path ends with one canonical summary line, ``run.succeeded`` or ``run.failed``.
    """
    state = _RunState(settings)
    try:
        state.execute()
    except BaseException as exc:
        failure = classify(exc)
        state.summary("run.failed", failure)
        failure.logged = True
        raise failure from None
    state.summary("run.succeeded")
    return 0


@dataclass
class _RunState:
    """One run's settings and everything it measures along the way."""

    settings: RunSettings
    timer: Timer = field(default_factory=Timer)
    counts: Counts = field(default_factory=Counts)
    started: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        self.stats = ScoreStats(self.settings.label_threshold or 0.5)

    def execute(self) -> None:
        """Prepare, lock, open the run row, score in one transaction, publish."""
        settings, timer = self.settings, self.timer
        url = settings.database_url.get_secret_value()
        with closing(db.connect(url)) as writer, closing(db.connect(url)) as reader:
            prepared = prepare(settings, writer, timer)
            record = RunRecord(writer, settings, prepared.resolved)
            record.lock()
            if record.status() == "succeeded":
                log.info("run.already_succeeded", detail="this run id already published")
                return
            started_at = datetime.now(UTC)
            trigger = record.open(prepared.model, started_at)
            log.info("run.started", trigger=trigger)
            partition = _partition(settings, prepared, started_at)
            try:
                with timer.step("score"):
                    self._score(prepared, reader, writer, partition)
                _check_rejected(settings, self.counts)
                with timer.step("index"), writer.cursor() as cur:
                    partition.attach(cur)
                with timer.step("publish"):
                    finished = record.publish(self.counts, self.stats, timer.timings)
            except BaseException as exc:
                failure = classify(exc)
                record.fail(str(failure), self.counts, timer.timings)
                raise failure from exc
        log.info("run.published", finished_at=finished.isoformat())

    def _score(
        self, prepared: Prepared, reader: Any, writer: Any, partition: sink.RunPartition
    ) -> None:
        """Stream, predict and COPY; reading, predicting and writing overlap in three threads."""
        settings, counts = self.settings, self.counts
        with writer.cursor() as cur:
            partition.create(cur)
        with _Writer(writer, partition.copy_statement) as send:
            begin = last = time.perf_counter()
            for chunk in features.stream(reader, prepared.plan, settings.chunk_rows):
                counts.read += chunk.read
                counts.rejected += chunk.rejected
                if chunk.ids.size:
                    scores = prepared.model.predict(chunk.features)
                    labels = label(scores, settings.label_threshold or 0.5)
                    self.stats.add(scores, labels)
                    send(sink.encode(chunk.ids, scores, labels))
                    counts.scored += int(chunk.ids.size)
                now = time.perf_counter()
                if now - last >= _PROGRESS_EVERY_SECONDS or counts.read == chunk.read:
                    log.info(
                        "batch.scored",
                        rows=counts.read,
                        rejected=counts.rejected,
                        rows_per_s=round(counts.read / max(now - begin, 1e-9)),
                    )
                    last = now

    def summary(self, event: str, failure: ScorerError | None = None) -> None:
        """The one canonical line that sums the run up."""
        elapsed = time.perf_counter() - self.started
        counts, stats = self.counts, self.stats
        fields: dict[str, Any] = {
            "status": "failed" if failure else "succeeded",
            "snapshot": self.settings.snapshot,
            "features": self.settings.features_table,
            "rows_read": counts.read,
            "rows_scored": counts.scored,
            "rows_rejected": counts.rejected,
            "score_mean": stats.mean,
            "score_p50": stats.quantile(0.5),
            "score_p90": stats.quantile(0.9),
            "share_above_threshold": stats.share_above,
            "threshold": self.settings.label_threshold,
            "seconds": round(elapsed, 3),
            "rows_per_s": round(counts.read / elapsed) if elapsed > 0 else None,
            "timings": self.timer.timings,
        }
        if failure is None:
            log.info(event, **fields)
        else:
            kind, code = failure.kind, failure.exit_code
            log.error(event, error=str(failure), kind=kind, exit_code=code, **fields)


class _Writer:
    """A background thread that sends encoded chunks with COPY, one at a time, in order."""

    def __init__(self, conn: Any, statement: str) -> None:
        self._conn = conn
        self._statement = statement
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=2)
        self._failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._loop, name="scorer-writer", daemon=True)

    def __enter__(self) -> Callable[[bytes], None]:
        self._thread.start()
        return self._send

    def _send(self, payload: bytes) -> None:
        if self._failure:
            raise self._failure[0]
        self._queue.put(payload)

    def _loop(self) -> None:
        try:
            with self._conn.cursor() as cur:
                while (payload := self._queue.get()) is not None:
                    sink.write(cur, self._statement, payload)
        except BaseException as exc:  # handed to the producer thread
            self._failure.append(exc)
            while self._queue.get() is not None:  # keep the producer unblocked
                pass

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc is not None and self._thread.is_alive():
            self._conn.cancel()
        self._queue.put(None)
        self._thread.join()
        if exc is None and self._failure:
            raise self._failure[0]


def _partition(
    settings: RunSettings, prepared: Prepared, started_at: datetime
) -> sink.RunPartition:
    """The table this run loads, with its lineage constants."""
    lineage = sink.Lineage(
        run_id=settings.run_id,
        model_name=prepared.resolved.name,
        model_version=prepared.resolved.version,
        snapshot=settings.snapshot or "",
        scored_at=started_at,
    )
    return sink.RunPartition(settings.target_schema, lineage)


def _check_rejected(settings: RunSettings, counts: Counts) -> None:
    ratio = counts.rejected / counts.read if counts.read else 0.0
    if ratio > settings.max_rejected_ratio:
        raise RejectedRowsError(
            f"{counts.rejected} of {counts.read} rows rejected ({ratio:.2%}), more than "
            f"SCORER_MAX_REJECTED_RATIO={settings.max_rejected_ratio:g}; nothing published"
        )


def classify(exc: BaseException) -> ScorerError:
    """Map any exception from a run to a ScorerError with the right exit code."""
    if isinstance(exc, ScorerError):
        return exc
    if isinstance(exc, KeyboardInterrupt):
        return TerminatedError("interrupted")
    if isinstance(exc, psycopg2.errors.UniqueViolation):
        return PermanentError("duplicate entity ids in the feature relation")
    description = f"{type(exc).__name__}: {exc}".strip()
    permanent = (
        psycopg2.errors.DataError,
        psycopg2.errors.UndefinedColumn,
        psycopg2.errors.InsufficientPrivilege,
    )
    if isinstance(exc, permanent):
        return PermanentError(description)
    return RetryableError(description)
