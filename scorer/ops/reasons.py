"""``scorer explain``'s reasons: the stored top contributions of one entity's score, with the
entity's own feature values read from the run's features.

The values are the user's own question about one entity, so they appear in ``explain``'s
output only: never in a log line, an error message or a run row. They are read from the
run's feature relation, in its snapshot, by the entity column the run recorded; when that
cannot be read (the relation is gone, the role may not read it) the reasons show without
values, and say why.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg2

from scorer.postgres import db
from scorer.postgres.identifiers import Relation, quote_any

Reason = dict[str, Any]


def attach(conn: db.Connection, score: dict[str, Any], entity_id: str) -> None:
    """Turn ``score["reasons"]`` (the stored jsonb pairs) into records with the entity's
    values as text, in place; ``score["values_unavailable"]`` says why values are missing."""
    pairs: Sequence[Sequence[Any]] | None = score.get("reasons")
    if pairs is None:
        return
    names = [str(name) for name, _ in pairs]
    values, missing = _values(conn, score, entity_id, names)
    score["reasons"] = [
        {"feature": name, "contribution": float(contribution), "value": _text(values.get(name))}
        for name, contribution in pairs
    ]
    if missing is not None:
        score["values_unavailable"] = missing


def line(score: dict[str, Any]) -> str:
    """``contract=Month-to-month +0.31, tenure=2 +0.22`` (``contract +0.31`` without values)."""
    shown = score.get("values_unavailable") is None
    return ", ".join(
        (
            f"{r['feature']}={'NULL' if r['value'] is None else r['value']}"
            if shown
            else r["feature"]
        )
        + f" {r['contribution']:+.3g}"
        for r in score["reasons"]
    )


def _values(
    conn: db.Connection, score: dict[str, Any], entity_id: str, names: list[str]
) -> tuple[dict[str, Any], str | None]:
    entity = score.get("entity_column")
    if not names:
        return {}, None
    if entity is None:
        return {}, "the run recorded no entity column (it ran before reasons were recorded)"
    relation = Relation.parse(str(score["features_relation"]))
    where = [f"{quote_any(entity)} = %s"]  # the literal takes the column's type
    params: list[str] = [entity_id]
    if score.get("snapshot_column") is not None:
        where.append(f"{quote_any(score['snapshot_column'])} = %s")
        params.append(str(score["snapshot"]))
    columns = ", ".join(quote_any(name) for name in names)
    try:
        with db.transaction(conn), conn.cursor() as cur:
            cur.execute(
                f"SELECT {columns} FROM {relation.sql} WHERE {' AND '.join(where)} LIMIT 1",
                params,
            )
            row = cur.fetchone()
    except psycopg2.Error as exc:
        return {}, f"cannot read {relation} ({type(exc).__name__})"
    if row is None:
        return {}, f"{relation} no longer holds this entity in snapshot {score['snapshot']}"
    return dict(zip(names, row, strict=True)), None


def _text(value: object) -> str | None:
    """A value as text, as the table holds it (``None`` for NULL)."""
    if value is None:
        return None
    return f"{value:g}" if isinstance(value, float) else str(value)
