"""The steps before a run's first write: resolve and load the model, check the role's
privileges, the schema and the feature relation (``prepare``); and the table a run loads."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from scorer.config import RunSettings
from scorer.io import features, sink
from scorer.model import reasons, registry, run_copy
from scorer.model.flavors import LoadedModel
from scorer.postgres import db, privileges, schema

log = structlog.get_logger("scorer")


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
    downloaded files (``Prepared.files``) for the run's other shards.
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
    reasons.require(model, settings.reasons)
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


def partition_for(
    settings: RunSettings, prepared: Prepared, started_at: datetime
) -> sink.RunPartition:
    """The table this run loads, with its lineage constants."""
    lineage = sink.LineageColumns(
        run_id=settings.run_id,
        model_name=prepared.resolved.name,
        model_version=prepared.resolved.version,
        snapshot=prepared.plan.snapshot.label,
        scored_at=started_at,
    )
    labelled = settings.label_threshold is not None
    partition = sink.RunPartition(
        settings.target_schema, lineage, prepared.plan.entity_kind, labelled
    )
    return partition.carrying_reasons() if settings.reasons else partition
