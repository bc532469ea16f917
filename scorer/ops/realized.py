"""Realized performance of one run: its predictions joined to the outcomes inside PostgreSQL.

One statement per run reads the run's partition and the outcome relation and returns one row
of aggregates (counts, the rank sum, the precision-recall sum, the Brier score, the top-k
positives, the calibration table): no prediction and no outcome leaves the server.

**Which outcome rows count.** A run of snapshot S evaluated at horizon H reads the outcome rows
whose time lies in the window (S, S + H days], and whose outcome is not NULL. An entity's label
is 1 if any of its rows in the window is 1 (true), 0 if it has rows there and all are 0; an
entity with no row there is unlabelled, and only the labelled rows enter the figures (the label
coverage says how many those are). A date column's value is midnight UTC of that day.

**The figures, exactly as scikit-learn defines them.**
- ROC AUC by the rank sum (Mann-Whitney U) with average ranks for ties, which equals
  ``roc_auc_score``: (sum of the positives' ranks - P(P+1)/2) / (P N), summed exactly in
  ``numeric``; undefined (NULL) unless both classes are present.
- Average precision as ``average_precision_score``: a step per distinct score, descending,
  sum over thresholds of (positives at the threshold / P) x precision at it; NULL with no
  positive.
- Precision in the top k: the ceil(k x labelled) highest scores; rows tied at the cut share
  the remaining places in proportion (the expected precision over every order of the ties).
  Lift is that precision over the base rate.
- Brier score: the mean of (score - label)^2, as ``brier_score_loss``.
- Calibration: ten bins of width 0.1 over [0, 1] (a score of 1 in the last), each with its
  rows, mean score and observed positive rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from scorer.errors import BadDataError, ConfigError, SchemaMismatchError
from scorer.io import sink
from scorer.postgres import db
from scorer.postgres.identifiers import Relation, quote_identifier

ENTITY_KINDS = {
    "int2": "bigint", "int4": "bigint", "int8": "bigint",
    "text": "text", "varchar": "text", "bpchar": "text",
    "uuid": "uuid",
}  # fmt: skip
"""Outcome entity column types, by the run id type they join (``scoring_runs.entity_type``)."""
_OUTCOME_TYPES = {"bool": "(o.{c})::integer", "int2": "(o.{c})::bigint", "int4": "(o.{c})::bigint",
                  "int8": "(o.{c})::bigint"}  # fmt: skip
_TIME_TYPES = ("date", "timestamp", "timestamptz")
CALIBRATION_BINS = 10


@dataclass(frozen=True)
class Outcomes:
    """The outcome relation as the catalog describes it, checked once per ``evaluate``."""

    relation: Relation
    entity_column: str
    outcome_column: str
    time_column: str
    entity_kind: str
    """The run id type the entity column joins: bigint, text or uuid."""
    label_sql: str
    """The outcome as 0/1 in SQL (``o`` is the relation's alias)."""


@dataclass(frozen=True)
class Scope:
    """What every evaluation of one ``evaluate`` shares."""

    target: str
    outcomes: Outcomes
    horizon_days: int
    top_share: float


@dataclass(frozen=True)
class Run:
    """A run to evaluate, and its outcome window."""

    run_id: str
    model_name: str
    entity_type: str
    probability: bool
    rows_scored: int
    mlflow_record_run_id: str | None
    window: tuple[datetime, datetime]
    window_from: str
    """What starts the window: ``snapshot``, or ``started_at`` when the snapshot is no time."""


@dataclass(frozen=True)
class Figures:
    """What one run's predictions were worth, once its outcomes landed."""

    rows_scored: int
    rows_labelled: int
    positives: int
    label_coverage: float
    base_rate: float | None
    roc_auc: float | None
    average_precision: float | None
    top_share: float
    top_rows: int | None
    precision_top: float | None
    lift_top: float | None
    brier: float | None
    calibration: list[dict[str, Any]] | None

    def metrics(self) -> dict[str, float]:
        """The figures as MLflow metrics (``realized_*``), the undefined ones left out."""
        values = {
            "realized_label_coverage": self.label_coverage,
            "realized_base_rate": self.base_rate,
            "realized_auc": self.roc_auc,
            "realized_average_precision": self.average_precision,
            "realized_precision_top": self.precision_top,
            "realized_lift_top": self.lift_top,
            "realized_brier": self.brier,
        }
        return {key: value for key, value in values.items() if value is not None}


def inspect(
    conn: db.Connection, relation: Relation, entity: str, outcome: str, time: str
) -> Outcomes:
    """Check the outcome relation and its three columns; raise ``ConfigError`` or
    ``SchemaMismatchError`` (exit 2) naming the setting at fault. Reads the catalog only."""
    with db.transaction(conn), conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)::oid", (relation.sql,))
        oid = db.one_value(cur)
        if oid is None:
            raise ConfigError(
                f"SCORER_OUTCOMES_TABLE: relation {relation} does not exist (or this role"
                " cannot see it)"
            )
        cur.execute(
            "SELECT a.attname, t.typname FROM pg_attribute AS a"
            " JOIN pg_type AS d ON d.oid = a.atttypid"  # a domain: its base type
            " JOIN pg_type AS t ON t.oid = coalesce(nullif(d.typbasetype, 0), d.oid)"
            " WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped",
            (oid,),
        )
        types = {str(name): str(kind) for name, kind in cur.fetchall()}
    for setting, column in (
        ("SCORER_OUTCOME_ENTITY_COLUMN", entity),
        ("SCORER_OUTCOME_COLUMN", outcome),
        ("SCORER_OUTCOME_TIME_COLUMN", time),
    ):
        if column not in types:
            raise ConfigError(f"{setting}: {relation} has no column {column!r}")
    kind = ENTITY_KINDS.get(types[entity])
    if kind is None:
        raise SchemaMismatchError(
            f"SCORER_OUTCOME_ENTITY_COLUMN: {relation}.{entity} is {types[entity]}; entity ids"
            " are integers, text or uuid"
        )
    if types[outcome] not in _OUTCOME_TYPES:
        raise SchemaMismatchError(
            f"SCORER_OUTCOME_COLUMN: {relation}.{outcome} is {types[outcome]}; an outcome is"
            " boolean or an integer 0/1"
        )
    if types[time] not in _TIME_TYPES:
        raise SchemaMismatchError(
            f"SCORER_OUTCOME_TIME_COLUMN: {relation}.{time} is {types[time]}; it must be a"
            " date or a timestamp"
        )
    label = _OUTCOME_TYPES[types[outcome]].format(c=quote_identifier(outcome))
    return Outcomes(relation, entity, outcome, time, kind, label)


_FIGURES = """
WITH scored AS (
    SELECT entity_id, score FROM {parent} WHERE run_id = %(run_id)s
), labelled AS (
    SELECT s.entity_id, s.score, max(o.y) AS y, bool_and(o.y IN (0, 1)) AS valid
    FROM scored AS s
    JOIN (
        SELECT o.{entity} AS entity_id, {label} AS y
        FROM {outcomes} AS o
        WHERE o.{time} > %(start)s AND o.{time} <= %(end)s AND o.{outcome} IS NOT NULL
    ) AS o ON o.entity_id = s.entity_id
    GROUP BY s.entity_id, s.score
), ranked AS (
    SELECT y, rank() OVER (ORDER BY score)::numeric
              + (count(*) OVER (PARTITION BY score) - 1)::numeric / 2 AS average_rank
    FROM labelled
), curve AS (
    SELECT score, n, pos,
           sum(n) OVER descending AS cum_n, sum(pos) OVER descending AS cum_pos
    FROM (SELECT score, count(*) AS n, sum(y)::bigint AS pos FROM labelled GROUP BY score) AS t
    WINDOW descending AS (ORDER BY score DESC ROWS UNBOUNDED PRECEDING)
), totals AS (
    SELECT count(*) AS labelled, coalesce(sum(y), 0)::bigint AS positives,
           coalesce(bool_and(valid), true) AS valid,
           avg((score - y) * (score - y)) AS brier,
           ceil(%(share)s::numeric * count(*))::bigint AS top_rows
    FROM labelled
)
SELECT
    (SELECT count(*) FROM scored),
    t.labelled, t.positives, t.valid, t.brier,
    (SELECT sum(average_rank) FROM ranked WHERE y = 1),
    (SELECT sum(pos::numeric * cum_pos / cum_n) FROM curve),
    t.top_rows,
    (SELECT (c.cum_pos - c.pos) + (t.top_rows - (c.cum_n - c.n)) * c.pos::numeric / c.n
     FROM curve AS c WHERE c.cum_n >= t.top_rows ORDER BY c.score DESC LIMIT 1),
    (SELECT jsonb_agg(jsonb_build_object(
                'bin', g.bin, 'lower', g.bin / 10.0, 'upper', (g.bin + 1) / 10.0,
                'rows', coalesce(b.rows, 0), 'mean_score', b.mean_score,
                'positive_rate', b.positive_rate) ORDER BY g.bin)
     FROM generate_series(0, 9) AS g(bin)
     LEFT JOIN (
        SELECT least(greatest(floor(score * 10), 0), 9)::integer AS bin, count(*) AS rows,
               avg(score) AS mean_score, avg(y)::double precision AS positive_rate
        FROM labelled GROUP BY 1
     ) AS b USING (bin))
FROM totals AS t
"""


def figures(cur: db.Cursor, scope: Scope, run: Run) -> Figures:
    """The run's figures over the outcome rows in its window; ``BadDataError`` if an integer
    outcome there is neither 0 nor 1 (no value is named)."""
    outcomes = scope.outcomes
    sql = _FIGURES.format(
        parent=f"{quote_identifier(scope.target)}.{quote_identifier(sink.PARENTS[run.entity_type])}",
        outcomes=outcomes.relation.sql,
        entity=quote_identifier(outcomes.entity_column),
        outcome=quote_identifier(outcomes.outcome_column),
        time=quote_identifier(outcomes.time_column),
        label=outcomes.label_sql,
    )
    start, end = run.window
    cur.execute(
        sql, {"run_id": run.run_id, "start": start, "end": end, "share": str(scope.top_share)}
    )
    row = cur.fetchone()
    assert row is not None  # an aggregate always returns its one row
    if not row[3]:
        raise BadDataError(
            f"SCORER_OUTCOME_COLUMN: {outcomes.relation}.{outcomes.outcome_column} holds values"
            f" other than 0 and 1 in the window of run {run.run_id!r}; an outcome is 0/1 or"
            " boolean"
        )
    return _figures(row, scope.top_share, run.probability)


def _figures(row: tuple[Any, ...], share: float, probability: bool) -> Figures:
    """The statement's row as figures: AUC from the rank sum, AP from its sum, exactly."""
    scored, labelled, positives, _, brier, rank_sum, ap_sum, top_rows, top_positives, bins = row
    negatives = labelled - positives
    auc = None
    if positives and negatives and rank_sum is not None:
        u = rank_sum - Decimal(positives) * (positives + 1) / 2
        auc = float(u / (Decimal(positives) * negatives))
    base_rate = positives / labelled if labelled else None
    average_precision = float(ap_sum / positives) if positives and ap_sum is not None else None
    precision_top = (
        float(top_positives / top_rows) if top_rows and top_positives is not None else None
    )
    lift = precision_top / base_rate if precision_top is not None and base_rate else None
    return Figures(
        rows_scored=int(scored),
        rows_labelled=int(labelled),
        positives=int(positives),
        label_coverage=labelled / scored if scored else 0.0,
        base_rate=base_rate,
        roc_auc=auc,
        average_precision=average_precision,
        top_share=share,
        top_rows=int(top_rows) if labelled else None,
        precision_top=precision_top,
        lift_top=lift,
        brier=float(brier) if probability and brier is not None else None,
        calibration=bins if probability and labelled else None,
    )
