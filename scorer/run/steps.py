"""The steps an unsharded run and a shard of a sharded run share: stream, predict and write;
refuse what cannot be published; the quality gate. Each works on the run's ``RunProgress``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import structlog

from scorer.errors import (
    EmptyRelationError,
    ModelOutputError,
    QualityGateError,
    ReferenceMovedError,
    RejectedRowsError,
    RetryableError,
)
from scorer.io import features, sink, workers
from scorer.model import reasons
from scorer.postgres import db, wire
from scorer.run import drift, gate
from scorer.run.prepare import Prepared
from scorer.run.progress import RunProgress
from scorer.run.record import Counts, Evidence
from scorer.run.statistics import label

log = structlog.get_logger("scorer")

_PROGRESS_EVERY_SECONDS = 5.0


def score(  # noqa: PLR0913 - the run, its model and plan, both connections, the table
    run: RunProgress,
    prepared: Prepared,
    reader: db.Connection,
    writer: db.Connection,
    table: sink.RunPartition,
    *,
    poll: Callable[[], None] = lambda: None,
) -> None:
    """Create the run's table, then stream, predict and COPY into it (in the caller's
    transaction); reading and writing run on threads of their own. ``poll`` is called after
    each chunk (a shard checks there whether its run still stands). The per-feature drift
    evidence of the rows scored ends in ``run.drift``."""
    settings, counts, plan = run.settings, run.counts, prepared.plan
    threshold, k = settings.label_threshold, settings.reasons
    with writer.cursor() as cur:
        table.create(cur)
    collector = _drift_collector(run, writer, prepared)

    def copy_all(payloads: Iterable[bytes]) -> None:
        with writer.cursor() as cur:
            sink.write(cur, table.copy_statement, payloads)

    with workers.consumed(copy_all, writer.cancel, name="scorer-writer") as send:
        begin = last = time.perf_counter()
        for chunk in features.stream(reader, plan, settings.chunk_rows):
            counts.read += chunk.read
            counts.rejected_by.update(chunk.rejected_by)
            run.feature_counts.add(chunk.nulls, chunk.empties)
            if chunk.ids.size:
                scores = prepared.model.predict(chunk, plan)
                labels = None if threshold is None else label(scores, threshold)
                run.stats.add(scores, labels)
                collector.add(chunk)
                why = reasons.column(prepared.model, chunk, plan, k, scores) if k else None
                send(wire.encode_predictions(chunk.ids, scores, labels, why))
            now = time.perf_counter()
            poll()
            if now - last >= _PROGRESS_EVERY_SECONDS or counts.read == chunk.read:
                log.info(
                    "batch.scored",
                    rows=counts.read,
                    rejected=counts.rejected,
                    rows_per_s=round(counts.read / max(now - begin, 1e-9)),
                )
                last = now
    run.drift = collector.evidence()


def check_scored(run: RunProgress, prepared: Prepared) -> None:
    """Refuse to publish what the scorer cannot stand behind."""
    settings, counts = run.settings, run.counts
    where = settings.features_table
    if prepared.plan.snapshot.column is not None:
        where += f" (snapshot {run.snapshot})"
    if counts.read == 0:
        raise EmptyRelationError(
            f"feature relation {where} has no rows; nothing published, the previous "
            "predictions stay (check the upstream load)"
        )
    ratio = counts.rejected / counts.read
    if ratio > settings.max_rejected_ratio:
        raise RejectedRowsError(
            f"{counts.rejected} of {counts.read} rows rejected ({ratio:.2%}: {_reasons(counts)}), "
            f"more than SCORER_MAX_REJECTED_RATIO={settings.max_rejected_ratio:g}; "
            "nothing published"
        )
    if run.stats.count == 0:
        raise RejectedRowsError(
            f"all {counts.read} rows of {where} were rejected ({_reasons(counts)}); "
            "nothing published"
        )
    if prepared.model.score_kind == "probability" and run.stats.all_extreme:
        raise ModelOutputError(
            f"the model's {prepared.model.method} returned only 0 and 1: labels, not "
            "probabilities; log it so that it returns probabilities, e.g. "
            'mlflow.pyfunc.log_model(..., pyfunc_predict_fn="predict_proba")'
        )


def check_gate(run: RunProgress, writer: db.Connection, prepared: Prepared) -> None:
    """Record the evidence and compare it with the previous published run (see
    ``scorer.run.gate``); past a limit, refuse to publish unless overridden."""
    settings = run.settings
    probabilities = prepared.model.score_kind == "probability"
    histogram = gate.coarse_histogram(run.stats.histogram) if probabilities else None
    stats = run.feature_counts.shares(run.stats.count)
    meaning = _meaning(run, prepared)
    reference = gate.previous(writer, settings.target_schema, meaning, settings.run_id)
    _check_drift_reference(run, reference)
    limits = gate.Limits(
        settings.max_score_psi,
        settings.min_rows_ratio,
        settings.max_null_share_increase,
        settings.max_feature_psi,
    )
    figures = _drift_figures(run, prepared, reference)
    observed = gate.Observed(run.stats.count, histogram, stats, figures)
    verdict = gate.evaluate(reference, observed, limits, settings.quality_override)
    run.verdict = verdict
    binned = run.drift
    run.evidence = Evidence(
        None if histogram is None else histogram.tolist(),
        stats,
        verdict.as_json(),
        settings.quality_override,
        None if binned is None else binned.bins().as_json(),
    )
    for check in verdict.warnings:
        log.warning("quality.warning", check=check.check, value=check.value, warn=check.warn)
    if isinstance(reference, gate.NoReference):
        log.info("quality.no_reference", detail=reference.reason)
    elif verdict.drift_unchecked:  # names and reasons only, never a value
        log.info("quality.feature_psi_unchecked", features=verdict.drift_unchecked)
    failed = "; ".join(check.describe() for check in verdict.failed)
    if failed and settings.quality_override is not None:
        log.warning("quality.overridden", failed=failed, reason=settings.quality_override)
    elif failed:
        raise QualityGateError(
            f"quality gate: {failed} against run {verdict.reference_run_id}; nothing "
            "published. If the change is deliberate (e.g. a new model version), let this "
            "run through with SCORER_QUALITY_OVERRIDE=<reason>"
        )


def _meaning(run: RunProgress, prepared: Prepared) -> gate.Meaning:
    """What this run's scores mean: runs are compared only with runs of the same."""
    return gate.Meaning(
        prepared.resolved.name,
        run.settings.features_table,
        prepared.model.score_kind,
        prepared.model.positive_class,
    )


def _drift_collector(
    run: RunProgress, writer: db.Connection, prepared: Prepared
) -> drift.Collector:
    """Per-feature drift evidence against the bins of the run the gate will compare with,
    looked up before streaming (``scorer.run.drift``)."""
    settings = run.settings
    meaning = _meaning(run, prepared)
    reference = gate.previous(writer, settings.target_schema, meaning, settings.run_id)
    categories = prepared.model.categories
    if isinstance(reference, gate.NoReference):
        return drift.Collector(prepared.plan, categories, None, None)
    return drift.Collector(prepared.plan, categories, reference.feature_bins, reference.run_id)


def _check_drift_reference(run: RunProgress, reference: gate.Reference | gate.NoReference) -> None:
    """The features were binned against the reference looked up before streaming: it must
    still be the gate's (a run of the model that published meanwhile moves it)."""
    binned = run.drift
    found = reference.run_id if isinstance(reference, gate.Reference) else None
    if binned is None or binned.reference_run_id == found:
        return
    moved = f"from {binned.reference_run_id} to {found}: a run published meanwhile"
    if run.settings.sharded:  # the other shards' rows are scored: only a new run re-bins them
        raise ReferenceMovedError(
            f"the quality gate's reference run changed while this run's shards scored ({moved}),"
            " so their features were binned against another run's; nothing published. A retry"
            " cannot re-bin them: start a new run (a new Job)"
        )
    raise RetryableError(
        f"the quality gate's reference run changed while this run scored ({moved}), so its "
        "features were binned against another run's; nothing published. Run again"
    )


def _drift_figures(
    run: RunProgress, prepared: Prepared, reference: gate.Reference | gate.NoReference
) -> drift.Figures:
    """This run's feature PSI against the reference's bins (``scorer.run.drift``)."""
    plan = prepared.plan
    if run.drift is None:  # a sharded run with a shard an earlier scorer version scored
        why = "a shard of this sharded run recorded no drift evidence (an earlier scorer)"
        return drift.Figures(None, {}, dict.fromkeys(plan.numbers + plan.strings, why))
    bins = reference.feature_bins if isinstance(reference, gate.Reference) else None
    return run.drift.figures(bins, plan.numbers, plan.strings)


def _reasons(counts: Counts) -> str:
    """Why rows were rejected, by column: ``contract: 1000 rows not a number``."""
    parts = []
    for key, count in counts.rejected_by.most_common():
        column, _, reason = key.partition(": ")
        parts.append(f"{column}: {count} rows {reason}")
    return ", ".join(parts)
