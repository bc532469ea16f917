"""Two runs of one snapshot compared, inside PostgreSQL: the shadow run's evidence and
``scorer compare``.

One query joins the two runs' partitions on the entity id and returns one row of figures; no
prediction row reaches the client. Over the entities both runs scored:

- ``spearman``: Spearman's rank correlation (Pearson's ``corr`` of the average ranks, so ties
  share their rank);
- ``top_overlap``: the share of run A's top ``k`` entities (``k`` = ceil(top share * rows), by
  score, ties broken by entity id) that are also run B's top ``k``;
- ``psi``: the population stability index of B's scores over the deciles of A's, each bin's
  share floored at 1e-4 (as the quality gate does), so an empty bin stays finite;
- ``label_disagreement``: the share of entities whose labels differ (each run's own label at
  its own threshold; ``None`` when either run stores no labels);
- ``mean_abs_diff``: the mean absolute difference of the two scores.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from scorer.errors import ConfigError, RunNotFoundError
from scorer.io.sink import PARENTS
from scorer.postgres import db
from scorer.postgres.identifiers import quote_identifier

PSI_FLOOR = 1e-4
"""A bin's share below this counts as this (``scorer.quality`` floors its PSI the same way)."""
_DECILES = [step / 10 for step in range(1, 10)]


@dataclass(frozen=True)
class RunFacts:
    """What the comparison needs to know of one run, from its row."""

    run_id: str
    status: str
    model_name: str
    model_version: int | None
    snapshot: str
    features_relation: str
    entity_type: str


@dataclass(frozen=True)
class Comparison:
    """The figures of run A against run B over the entities both scored."""

    run_a: str
    run_b: str
    snapshot: str
    version_a: int | None
    version_b: int | None
    rows_a: int
    rows_b: int
    rows_compared: int
    top_share: float
    top_rows: int
    spearman: float | None
    top_overlap: float | None
    psi: float | None
    label_disagreement: float | None
    mean_abs_diff: float | None

    def as_json(self) -> dict[str, Any]:
        """Every field, for ``--json``, the summary line and the run rows."""
        return asdict(self)

    def figures(self) -> dict[str, float | None]:
        """The five figures, by name (the MLflow metrics, the run rows' ``comparison``)."""
        return {
            "spearman": self.spearman,
            "top_overlap": self.top_overlap,
            "psi": self.psi,
            "label_disagreement": self.label_disagreement,
            "mean_abs_diff": self.mean_abs_diff,
        }

    def against(self, run_id: str) -> dict[str, Any]:
        """What one of the two runs' rows records: the other run and the figures."""
        other = self.run_b if run_id == self.run_a else self.run_a
        return {"compared_with": other, **self.as_json()}


def facts(cur: db.Cursor, schema: str, run_id: str) -> RunFacts:
    """The run's row, or ``RunNotFoundError`` (exit 2) naming it."""
    cur.execute(
        "SELECT run_id, status, model_name, model_version, snapshot, features_relation,"
        f" entity_type FROM {quote_identifier(schema)}.scoring_runs WHERE run_id = %s",
        (run_id,),
    )
    row = cur.fetchone()
    if row is None:
        raise RunNotFoundError(f"no run {run_id!r} in schema {schema!r} (see `scorer runs`)")
    return RunFacts(*row)


def comparable(a: RunFacts, b: RunFacts) -> None:
    """Refuse (``ConfigError``, exit 2) two runs whose predictions cannot be compared."""
    for run in (a, b):
        if run.status != "succeeded":
            raise ConfigError(
                f"run {run.run_id} is {run.status}: it has no predictions to compare"
                + (" (prune dropped them)" if run.status == "pruned" else "")
            )
    if a.snapshot != b.snapshot:
        raise ConfigError(
            f"runs {a.run_id} and {b.run_id} scored different snapshots ({a.snapshot} and"
            f" {b.snapshot}): compare two runs of one snapshot"
        )
    if a.entity_type != b.entity_type:
        raise ConfigError(
            f"runs {a.run_id} and {b.run_id} have entity ids of different types"
            f" ({a.entity_type} and {b.entity_type}): no entity joins the two"
        )


def between(
    conn: db.Connection, schema: str, run_a: str, run_b: str, top_share: float
) -> Comparison:
    """Compare ``run_a`` (the reference, e.g. the champion) with ``run_b``, in one read-only
    transaction. Raises ``RunNotFoundError`` or ``ConfigError`` (exit 2) when they cannot be."""
    with db.transaction(conn), conn.cursor() as cur:
        a, b = facts(cur, schema, run_a), facts(cur, schema, run_b)
        comparable(a, b)
        parent = f"{quote_identifier(schema)}.{PARENTS[a.entity_type]}"
        values = {"a": run_a, "b": run_b, "share": top_share, "deciles": _DECILES}
        cur.execute(_QUERY.format(parent=parent), {**values, "floor": PSI_FLOOR})
        row = cur.fetchone()
    if row is None or not row[2]:
        raise ConfigError(
            f"runs {run_a} and {run_b} scored no entity in common: nothing to compare"
        )
    rows_a, rows_b, rows, top, spearman, overlap, psi, disagreement, mean_abs = row
    return Comparison(
        run_a=run_a,
        run_b=run_b,
        snapshot=a.snapshot,
        version_a=a.model_version,
        version_b=b.model_version,
        rows_a=int(rows_a),
        rows_b=int(rows_b),
        rows_compared=int(rows),
        top_share=top_share,
        top_rows=int(top),
        spearman=_number(spearman),
        top_overlap=_number(overlap),
        psi=_number(psi),
        label_disagreement=_number(disagreement),
        mean_abs_diff=_number(mean_abs),
    )


def record(conn: db.Connection, schema: str, comparison: Comparison) -> None:
    """Write the comparison on both runs' rows (``comparison``), in one transaction."""
    with db.transaction(conn), conn.cursor() as cur:
        for run_id in (comparison.run_a, comparison.run_b):
            cur.execute(
                f"UPDATE {quote_identifier(schema)}.scoring_runs SET comparison = %s"
                " WHERE run_id = %s",
                (json.dumps(comparison.against(run_id)), run_id),
            )


def render(comparison: Comparison) -> str:
    """The comparison as ``scorer compare`` prints it for people."""
    c = comparison
    lines = [
        f"run A  {c.run_a} (version {c.version_a})",
        f"run B  {c.run_b} (version {c.version_b})",
        f"snapshot {c.snapshot}: {c.rows_compared} entities scored by both"
        f" (A {c.rows_a}, B {c.rows_b})",
        "",
        f"  spearman rank correlation        {_shown(c.spearman)}",
        f"  top {c.top_share:.0%} overlap ({c.top_rows} entities)".ljust(35)
        + _shown(c.top_overlap),
        f"  PSI (B over A's deciles)         {_shown(c.psi)}",
        f"  labels that differ               {_shown(c.label_disagreement)}",
        f"  mean absolute score difference   {_shown(c.mean_abs_diff)}",
    ]
    return "\n".join(lines)


def _shown(value: float | None) -> str:
    return "-" if value is None else f"{value:.6f}"


def _number(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


# The figures in one statement. Ranks: average ranks (ties share the mean of their positions),
# so corr() of them is Spearman's coefficient. The decile edges of A (percentile_disc) bin both
# runs with width_bucket; generate_series keeps a bin empty in both runs in the sum (as 0).
_QUERY = """
WITH a AS (
    SELECT entity_id, score, label FROM {parent} WHERE run_id = %(a)s
), b AS (
    SELECT entity_id, score, label FROM {parent} WHERE run_id = %(b)s
), joined AS (
    SELECT a.entity_id, a.score AS score_a, b.score AS score_b, a.label AS label_a,
           b.label AS label_b
    FROM a JOIN b USING (entity_id)
), size AS (
    SELECT count(*) AS n, greatest(ceil(%(share)s::numeric * count(*)), 1)::bigint AS k
    FROM joined
), ranked AS (
    SELECT (rank() OVER (ORDER BY score_a) + size.n + 1 - rank() OVER (ORDER BY score_a DESC))
               / 2.0 AS rank_a,
           (rank() OVER (ORDER BY score_b) + size.n + 1 - rank() OVER (ORDER BY score_b DESC))
               / 2.0 AS rank_b,
           row_number() OVER (ORDER BY score_a DESC, entity_id) <= size.k AS top_a,
           row_number() OVER (ORDER BY score_b DESC, entity_id) <= size.k AS top_b
    FROM joined CROSS JOIN size
), edges AS (
    SELECT percentile_disc(%(deciles)s::double precision[]) WITHIN GROUP (ORDER BY score_a)
               AS edge
    FROM joined
), binned AS (
    SELECT width_bucket(score_a, edges.edge) AS bin_a, width_bucket(score_b, edges.edge) AS bin_b
    FROM joined CROSS JOIN edges
), histogram AS (
    SELECT bin, sum(in_a) AS count_a, sum(in_b) AS count_b
    FROM (
        SELECT bin_a AS bin, 1 AS in_a, 0 AS in_b FROM binned
        UNION ALL
        SELECT bin_b, 0, 1 FROM binned
    ) AS both_runs
    GROUP BY bin
), shares AS (
    SELECT greatest(coalesce(h.count_a, 0) / size.n::double precision, %(floor)s) AS share_a,
           greatest(coalesce(h.count_b, 0) / size.n::double precision, %(floor)s) AS share_b
    FROM generate_series(0, 9) AS bins(bin)
    LEFT JOIN histogram AS h USING (bin)
    CROSS JOIN size
)
SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b), size.n, size.k,
       (SELECT corr(rank_a::double precision, rank_b::double precision) FROM ranked),
       (SELECT count(*) FILTER (WHERE top_a AND top_b)::double precision / size.k FROM ranked),
       (SELECT sum((share_b - share_a) * ln(share_b / share_a)) FROM shares),
       (SELECT avg((label_a <> label_b)::integer)::double precision FROM joined),
       (SELECT avg(abs(score_a - score_b)) FROM joined)
FROM size
"""
