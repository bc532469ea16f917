"""``scorer runs``, ``scorer show`` and ``scorer explain``: the run history, read-only.

They read ``scoring_runs`` and the predictions parents, nothing else (no registry). Each
prints a text table for people, or one JSON document with ``--json``. What they print holds
ids, names, counts and statistics only: these tables hold no feature value (entity ids are
ids; ``feature_stats`` and ``rows_rejected_by`` name columns, never values).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from scorer.errors import RunNotFoundError
from scorer.io import sink
from scorer.ops import reasons
from scorer.postgres import db, ranking
from scorer.postgres.identifiers import quote_identifier
from scorer.run.gate import FIRST_RUN, HISTOGRAM_BINS

_BAR_WIDTH = 28
_EIGHTHS = " ▏▎▍▌▋▊▉"
_INTEGER = re.compile(r"[+-]?[0-9]{1,19}")
_INT64 = (-(2**63), 2**63 - 1)
_DASH = "—"
_STEPS = ("resolve", "schema", "load", "check", "score", "gate", "index", "publish")
"""A run's steps in the order it takes them (``timings`` is JSONB, which keeps no order)."""
Record = dict[str, Any]

# A run's duration: the sum of its steps' timings (resolve, load and check come before
# started_at, which is when its row opened), else from started_at to finished_at.
_DURATION = """coalesce(
    (SELECT sum(value::double precision)
     FROM jsonb_each_text(CASE WHEN jsonb_typeof(timings) = 'object' THEN timings END)),
    extract(epoch FROM finished_at - started_at)::double precision)"""
_RUN_COLUMNS = """
    run_id, status, trigger, model_name, model_selector, model_version, snapshot,
    features_relation, entity_type, rows_read, rows_scored, rows_rejected, score_mean,
    (SELECT (c->>'value')::double precision
     FROM jsonb_array_elements(CASE WHEN jsonb_typeof(quality->'checks') = 'array'
                                    THEN quality->'checks' END) AS c
     WHERE c->>'check' = 'score_psi' LIMIT 1) AS score_psi,
    (quality->>'passed')::boolean AS quality_passed,
    started_at, finished_at, shadow,
    {duration} AS duration_seconds,
    extract(epoch FROM now() - started_at)::double precision AS age_seconds,
    pruned_at,
    (SELECT e.roc_auc FROM {evaluations} AS e WHERE e.run_id = scoring_runs.run_id
     ORDER BY e.evaluated_at DESC, e.horizon_days DESC LIMIT 1) AS realized_auc
"""


# --- runs -------------------------------------------------------------------------------


def runs(conn: db.Connection, target: str, model: str | None, limit: int) -> list[Record]:
    """The ``limit`` most recent runs (of ``model``, or of every model), newest first."""
    with db.transaction(conn), conn.cursor() as cur:
        cur.execute(
            f"SELECT {_RUN_COLUMNS.format(duration=_DURATION, evaluations=_evaluations(target))}"
            f" FROM {_runs_table(target)}"
            " WHERE %(model)s::text IS NULL OR model_name = %(model)s::text"
            " ORDER BY started_at DESC, run_id DESC LIMIT %(limit)s",
            {"model": model, "limit": limit},
        )
        return _records(cur)


def render_runs(records: Sequence[Record]) -> str:
    """The runs as an aligned text table."""
    if not records:
        return "no runs"
    header = (
        "RUN ID", "STATUS", "TRIGGER", "MODEL", "SELECTOR → VERSION", "SNAPSHOT", "ROWS",
        "REJECTED", "MEAN", "PSI", "AUC", "DURATION", "AGE",
    )  # fmt: skip
    rows = [
        (
            r["run_id"],
            f"{r['status']} (shadow)" if r.get("shadow") else r["status"],
            r["trigger"],
            r["model_name"],
            f"{r['model_selector']} → {_text(r['model_version'])}",
            r["snapshot"],
            _count(r["rows_read"]),
            _count(r["rows_rejected"]),
            _fixed(r["score_mean"], 4),
            _fixed(r["score_psi"], 3),
            _fixed(r["realized_auc"], 3),
            _duration(r["duration_seconds"]),
            _age(r["age_seconds"]),
        )
        for r in records
    ]
    right = {"ROWS", "REJECTED", "MEAN", "PSI", "AUC", "DURATION", "AGE"}
    return _table(header, rows, right=right)


# --- show -------------------------------------------------------------------------------


def show(conn: db.Connection, target: str, run_id: str) -> Record:
    """One run's whole row, its duration, and its reference run (the one its checks compared
    it with), or ``RunNotFoundError``."""
    table = _runs_table(target)
    with db.transaction(conn), conn.cursor() as cur:
        cur.execute(
            f"SELECT *, {_DURATION} AS duration_seconds FROM {table} WHERE run_id = %s",
            (run_id,),
        )
        found = _records(cur)
        if not found:
            raise RunNotFoundError(
                f"no run {run_id!r} in {target}.scoring_runs (`scorer runs` lists them)"
            )
        record = found[0]
        # The per-feature bins stay in the row for the gate; shown, only which features have
        # them (an edge is a statistic of the reference, yet it may equal some row's value).
        record["feature_bins"] = sorted(record.get("feature_bins") or {}) or None
        reference_id = (record.get("quality") or {}).get("reference_run_id")
        record["reference"] = None
        if reference_id:
            cur.execute(
                "SELECT run_id, status, model_version, snapshot, finished_at, rows_scored,"
                f" score_mean, score_histogram FROM {table} WHERE run_id = %s",
                (reference_id,),
            )
            references = _records(cur)
            record["reference"] = references[0] if references else {"run_id": reference_id}
        record["shard_runs"] = []
        if (record.get("shards") or 1) > 1:
            cur.execute(
                "SELECT shard, status, attempts, rows_read, rows_scored, rows_rejected, timings,"
                f" error FROM {quote_identifier(target)}.scoring_run_shards WHERE run_id = %s"
                " ORDER BY shard",
                (run_id,),
            )
            record["shard_runs"] = _records(cur)
        cur.execute(
            f"SELECT * FROM {_evaluations(target)} WHERE run_id = %s ORDER BY horizon_days",
            (run_id,),
        )
        record["evaluations"] = _records(cur)
    return record


def render_show(record: Record, bins: int = 20) -> str:
    """The run's lineage chain, counts, statistics, checks, error and score histogram."""
    r = record
    lines = [
        ("run", r["run_id"]),
        ("status", _join(r["status"], r["trigger"], f"attempt {r['attempts']}",
                         f"scorer {r['scorer_version']}")),
        ("lineage", f"{r['model_selector']} → {r['model_name']} version "
                    f"{_text(r['model_version'])} → MLflow run {_text(r['mlflow_run_id'])}"),
        ("", _join(f"source {_text(r['model_source'])}",
                   r["model_id"] and f"model id {r['model_id']}")),
        ("", _join(r["model_flavor"] and f"flavor {r['model_flavor']}", r["score_method"],
                   f"{r['score_kind']} of class {_text(r['positive_class'])}",
                   f"threshold {_text(r['threshold'])}")),
        ("features", _join(r["features_relation"], f"snapshot {r['snapshot']}"
                           + (f" (column {r['snapshot_column']})" if r["snapshot_column"] else ""),
                           f"entity ids {r['entity_type']}")),
        ("kubernetes", _kubernetes(r)),
        ("time", _join(f"started {_when(r['started_at'])}",
                       r["finished_at"] and f"finished {_when(r['finished_at'])}",
                       r["finished_at"] and f"took {_duration(r['duration_seconds'])}")),
        ("steps", _steps(r["timings"])),
        ("shards", _shards(r)),
        ("rows", _join(f"read {_count(r['rows_read'])}", f"scored {_count(r['rows_scored'])}",
                       f"rejected {_count(r['rows_rejected'])}" + _rejected_by(r))),
        ("scores", _scores(r)),
        ("nulls", _feature_stats(r["feature_stats"])),
    ]  # fmt: skip
    lines += _quality(r)
    lines += _evaluations_shown(r.get("evaluations") or [])
    if r["quality_override"]:
        lines.append(("override", r["quality_override"]))
    if r["error"]:
        lines.append(("error", r["error"]))
    if r["pruned_at"]:
        lines.append(("pruned", f"{_when(r['pruned_at'])}: its partition dropped, row kept"))
    lines += _shadow(r)
    text = "\n".join(f"{label:<11} {value}".rstrip() for label, value in lines if value)
    return f"{text}\n\n{_histograms(r, bins)}"


def _shadow(r: Record) -> list[tuple[str, str]]:
    """A shadow run's champion, and the comparison either run records (``scorer.run.shadow``)."""
    lines = []
    if r.get("shadow_of"):
        lines.append(("shadow", f"of run {r['shadow_of']}: in no consumer view"))
    compared = r.get("comparison")
    if compared:
        figures = _join(*(
            f"{name} {_fixed(compared.get(key), 4)}"
            for key, name in (("spearman", "spearman"), ("top_overlap", "top overlap"),
                              ("psi", "PSI"), ("label_disagreement", "labels differ"),
                              ("mean_abs_diff", "mean |diff|"))
        ))  # fmt: skip
        lines.append(("compared", f"with run {compared.get('compared_with')}: {figures}"))
    return lines


def _kubernetes(r: Record) -> str:
    parts = [
        r[key] and f"{name} {r[key]}"
        for key, name in (
            ("k8s_namespace", "namespace"),
            ("k8s_cronjob", "cronjob"),
            ("k8s_job", "job"),
            ("k8s_pod", "pod"),
            ("k8s_node", "node"),
            ("image", "image"),
        )
    ]
    return _join(*parts) or f"{_DASH} (not run on Kubernetes)"


def _steps(timings: Mapping[str, float] | None) -> str:
    if not timings:
        return ""
    order = {step: index for index, step in enumerate(_STEPS)}
    steps = sorted(timings.items(), key=lambda item: order.get(item[0], len(order)))
    return _join(*(f"{step} {seconds:g}s" for step, seconds in steps))


def _shards(r: Record) -> str:
    """A sharded run: each shard's status, rows and time (its steps' sum), and its attempts."""
    runs = r.get("shard_runs") or []
    if not runs:
        return ""
    parts = [f"{r['shards']} shards, by entity id range"]
    for shard in runs:
        seconds = sum((shard["timings"] or {}).values())
        attempts = f", attempt {shard['attempts']}" if shard["attempts"] > 1 else ""
        parts.append(
            f"{shard['shard']}: {shard['status']} {_count(shard['rows_read'])} rows"
            f" {seconds:.1f}s{attempts}"
        )
    return _join(*parts)


def _rejected_by(r: Record) -> str:
    reasons = r["rows_rejected_by"] or {}
    if not reasons:
        return ""
    return " (" + ", ".join(f"{reason} {count:,}" for reason, count in reasons.items()) + ")"


def _scores(r: Record) -> str:
    share = r["share_above_threshold"]
    return _join(
        r["score_mean"] is not None and f"mean {_fixed(r['score_mean'], 4)}",
        r["score_p50"] is not None and f"p50 {_fixed(r['score_p50'], 4)}",
        r["score_p90"] is not None and f"p90 {_fixed(r['score_p90'], 4)}",
        share is not None and f"above threshold {share:.1%}",
    )


def _feature_stats(stats: Mapping[str, Mapping[str, float]] | None) -> str:
    if not stats:
        return ""
    parts = []
    for column, shares in sorted(stats.items()):  # JSONB keeps no order: by name
        text = f"{column} {shares.get('null_share', 0.0):.1%}"
        if "empty_share" in shares:
            text += f" (empty {shares['empty_share']:.1%})"
        parts.append(text)
    return _join(*parts)


def _quality(r: Record) -> list[tuple[str, str]]:
    quality = r["quality"]
    if not quality:
        return [("quality", f"{_DASH} (no checks recorded)")]
    verdict = "passed" if quality.get("passed") else "failed"
    ref = r["reference"]
    if ref is None:
        against = f"no reference run ({quality.get('no_reference') or FIRST_RUN})"
    elif "status" not in ref:
        against = f"against run {ref['run_id']} (its row is gone)"
    else:
        against = (
            f"against run {ref['run_id']} (version {_text(ref['model_version'])}, "
            f"snapshot {ref['snapshot']}, {ref['status']})"
        )
    lines = [("quality", f"{verdict}, {against}")]
    checks = quality.get("checks") or []
    if checks:
        header = ("CHECK", "VALUE", "WARN", "LIMIT", "STATUS")
        rows = [
            (
                c.get("check", ""),
                _fixed(c.get("value"), 4),
                _text(c.get("warn")),
                _text(c.get("limit")),
                c.get("status", ""),
            )
            for c in checks
        ]
        table = _table(header, rows, right={"VALUE", "WARN", "LIMIT"})
        lines += [("", f"  {line}") for line in table.splitlines()]
    return lines


def _evaluations_shown(evaluations: Sequence[Record]) -> list[tuple[str, str]]:
    """``scorer evaluate``'s figures, one line per horizon, and its calibration table."""
    lines = []
    for e in evaluations:
        top = f"top {e['top_share']:.0%}"
        lines.append(
            (
                "realized",
                _join(
                    f"{e['horizon_days']} days (outcomes {e['window_start']:%Y-%m-%d} to"
                    f" {e['window_end']:%Y-%m-%d} in {e['outcomes_relation']})",
                    f"coverage {e['label_coverage']:.1%} of {_count(e['rows_scored'])}",
                    e["base_rate"] is not None and f"base rate {e['base_rate']:.1%}",
                    f"AUC {_fixed(e['roc_auc'], 4)}",
                    f"AP {_fixed(e['average_precision'], 4)}",
                    f"{top} precision {_fixed(e['precision_top'], 4)}"
                    f" lift {_fixed(e['lift_top'], 2)}",
                    e["brier"] is not None and f"Brier {e['brier']:.4f}",
                    f"evaluated {_when(e['evaluated_at'])}",
                ),
            )
        )
        bins = [b for b in e["calibration"] or [] if b.get("rows")]
        if bins:
            header = ("SCORES", "ROWS", "MEAN SCORE", "POSITIVE RATE")
            rows = [
                (
                    f"[{b['lower']:.1f}, {b['upper']:.1f})",
                    _count(b["rows"]),
                    _fixed(b["mean_score"], 4),
                    _fixed(b["positive_rate"], 4),
                )
                for b in bins
            ]
            table = _table(header, rows, right={"ROWS", "MEAN SCORE", "POSITIVE RATE"})
            lines += [("", f"  {line}") for line in table.splitlines()]
    return lines


def _histograms(r: Record, bins: int) -> str:
    mine = r["score_histogram"]
    if not mine:
        return f"score distribution: {_DASH} (no histogram recorded: raw scores, or an older run)"
    ref = r["reference"] or {}
    theirs = ref.get("score_histogram")
    columns = [(f"this run ({_count(sum(mine))})", rebin(mine, bins))]
    if theirs:
        columns.append((f"reference {ref['run_id']} ({_count(sum(theirs))})", rebin(theirs, bins)))
    shares = [[count / max(sum(counts), 1) for count in counts] for _, counts in columns]
    top = max(max(column) for column in shares) or 1.0
    width = _BAR_WIDTH + 7
    lines = [f"{'score':<14}" + "  ".join(f"{title:<{width}}" for title, _ in columns)]
    for index in range(bins):
        low, high = index / bins, (index + 1) / bins
        label = f"[{low:.2f}, {high:.2f})"
        cells = [f"{_bar(share[index] / top)} {share[index]:6.1%}" for share in shares]
        lines.append(f"{label:<14}" + "  ".join(cells))
    return "\n".join(line.rstrip() for line in lines)


def rebin(histogram: Sequence[int], bins: int) -> list[int]:
    """Sum the 1000 fine bins into ``bins`` equal ones (``bins`` divides 1000)."""
    if HISTOGRAM_BINS % bins or len(histogram) != HISTOGRAM_BINS:
        raise ValueError(f"cannot sum {len(histogram)} bins into {bins}")
    step = HISTOGRAM_BINS // bins
    return [sum(histogram[i : i + step]) for i in range(0, HISTOGRAM_BINS, step)]


def _bar(fraction: float) -> str:
    eighths = round(max(0.0, min(1.0, fraction)) * _BAR_WIDTH * 8)
    full, rest = divmod(eighths, 8)
    return ("█" * full + (_EIGHTHS[rest] if rest else "")).ljust(_BAR_WIDTH)


# --- explain ----------------------------------------------------------------------------


def explain(
    conn: db.Connection, target: str, entity_id: str, model: str | None, run: str | None = None
) -> Record:
    """The entity's score in every kept run (of ``model``, or of every model; only ``run``'s
    when given), with its reasons (``scorer.ops.reasons``) in the run each model's
    ``latest_predictions`` shows, or in ``run``.

    Each id type's parent is searched with the id in that type, when it has that form (an
    integer, a uuid; every id is a text id). The lookup is one index probe per kept run.
    """
    table = _runs_table(target)
    found: list[Record] = []
    with db.transaction(conn), conn.cursor() as cur:
        for kind, parent in sink.PARENTS.items():
            value = _as_kind(entity_id, kind)
            if value is None:
                continue
            cur.execute(
                f"""
                WITH ranked AS (
                    SELECT run_id, model_name, model_selector, model_version, snapshot,
                           features_relation, entity_type, snapshot_column,
                           coalesce(entity_column, run_settings->>'entity_column')
                               AS entity_column,
                           {ranking.LATEST_RANK} AS rank, {ranking.PUBLISHED_RANK} AS newest
                    FROM {table}
                    WHERE status = 'succeeded' AND NOT shadow
                      AND (%(model)s::text IS NULL OR model_name = %(model)s::text)
                )
                SELECT r.run_id, r.model_name, r.model_selector, r.model_version, r.snapshot,
                       r.features_relation, r.entity_type, p.score, p.label, p.scored_at,
                       r.rank = 1 AS latest, r.newest = 1 AS published, r.snapshot_column,
                       r.entity_column, p.reasons
                FROM ranked AS r
                CROSS JOIN LATERAL (
                    SELECT score, label, scored_at, reasons
                    FROM {quote_identifier(target)}.{parent} AS p
                    WHERE p.run_id = r.run_id AND p.entity_id = %(id)s::{kind} OFFSET 0
                ) AS p
                WHERE r.entity_type = %(kind)s
                  AND (%(run)s::text IS NULL OR r.run_id = %(run)s::text)
                ORDER BY r.model_name, r.rank
                """,
                {"model": model, "id": value, "kind": kind, "run": run},
            )
            found += _records(cur)
    for score in found:
        if score["latest"] or run is not None:
            reasons.attach(conn, score, entity_id)
        else:
            score["reasons"] = None  # shown for the run explained only
        del score["snapshot_column"], score["entity_column"]
    found.sort(key=lambda s: s["model_name"])  # stable: each model's runs stay newest first
    return {"entity_id": entity_id, "model_name": model, "scores": found}


def render_explain(record: Record) -> str:
    """The entity's scores as a table, with which run each view shows."""
    scores = record["scores"]
    of = f"model {record['model_name']}" if record["model_name"] else "any model"
    if not scores:
        return (
            f"entity {record['entity_id']}: no scores in the kept runs of {of}"
            " (pruned runs keep no predictions)"
        )
    header = (
        "MODEL", "RUN ID", "SELECTOR → VERSION", "SNAPSHOT", "FEATURES", "SCORE", "LABEL",
        "SCORED AT", "SHOWN BY",
    )  # fmt: skip
    rows = [
        (
            s["model_name"],
            s["run_id"],
            f"{s['model_selector']} → {_text(s['model_version'])}",
            s["snapshot"],
            s["features_relation"],
            _fixed(s["score"], 6),
            _text(s["label"]),
            _when(s["scored_at"]),
            "latest_predictions"
            if s["latest"]
            else ("published_predictions" if s["published"] else _DASH),
        )
        for s in scores
    ]
    title = (
        f"entity {record['entity_id']}: {len(scores)} scores in the kept runs of {of}"
        " (newest snapshot first)"
    )
    why = [
        f"reasons ({s['model_name']}, run {s['run_id']}): {reasons.line(s)}"
        + (f" (values not shown: {s['values_unavailable']})" if "values_unavailable" in s else "")
        for s in scores
        if s["reasons"] is not None
    ]
    return "\n".join([title, _table(header, rows, right={"SCORE", "LABEL"}), *why])


def _as_kind(entity_id: str, kind: str) -> int | str | None:
    """``entity_id`` as an id of ``kind`` (bigint, uuid, text), or ``None`` if it is not one."""
    if kind == "bigint":
        if not _INTEGER.fullmatch(entity_id.strip()):
            return None
        number = int(entity_id)
        return number if _INT64[0] <= number <= _INT64[1] else None
    if kind == "uuid":
        try:
            return str(uuid.UUID(entity_id.strip()))
        except ValueError:
            return None
    return entity_id


# --- shared -----------------------------------------------------------------------------


def to_json(value: Any) -> str:
    """One JSON document (timestamps in ISO 8601)."""
    return json.dumps(value, default=_json_default, indent=2, ensure_ascii=False)


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return _utc(value).isoformat().replace("+00:00", "Z")
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _evaluations(target: str) -> str:
    return f"{quote_identifier(target)}.scoring_run_evaluations"


def _runs_table(target: str) -> str:
    return f"{quote_identifier(target)}.scoring_runs"


def _records(cur: db.Cursor) -> list[Record]:
    names = [column.name for column in cur.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], right: set[str]) -> str:
    cells = [list(header), *[[_text(cell) for cell in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for row in cells:
        parts = [
            cell.rjust(width) if name in right else cell.ljust(width)
            for cell, width, name in zip(row, widths, header, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _join(*parts: object) -> str:
    return " · ".join(str(part) for part in parts if part)


def _text(value: object) -> str:
    if value is None:
        return _DASH
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _fixed(value: float | None, digits: int) -> str:
    return _DASH if value is None else f"{value:.{digits}f}"


def _count(value: int | None) -> str:
    return _DASH if value is None else f"{value:,}"


def _when(value: datetime | None) -> str:
    return (
        _DASH if value is None else _utc(value).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo is not None else value


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return _DASH
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return _DASH
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(int(seconds), 0)}s"
