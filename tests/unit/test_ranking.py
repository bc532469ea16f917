"""The "latest" rule: the consumer views, as the migrations last define them, choose their run
by the same ranking that retention and history use (scorer.postgres.ranking)."""

from __future__ import annotations

import re

import pytest

from scorer.postgres import privileges, ranking, schema

_VIEW = re.compile(r"CREATE (?:OR REPLACE )?VIEW \{s\}\.(\w+) AS(.*?);", re.DOTALL)
_WINDOW = re.compile(r"row_number\(\) OVER \(PARTITION BY (.+?) ORDER BY (.+)\)")


def newest_definitions() -> dict[str, str]:
    """Each view's SQL as the newest migration that creates it has it (whitespace folded)."""
    views: dict[str, str] = {}
    for migration in schema.MIGRATIONS:
        for name, body in _VIEW.findall(migration.script):
            views[name] = " ".join(body.split())
    return views


def chooses_like(rank: str) -> str:
    """The ``DISTINCT ON … ORDER BY …`` that picks the rows ``rank`` numbers 1."""
    window = _WINDOW.fullmatch(rank)
    assert window is not None, rank
    partition, order = window.groups()
    distinct, ordered = f"DISTINCT ON ({partition})", f"ORDER BY {partition}, {order}"
    return f"{re.escape(distinct)} .* {re.escape(ordered)} \\)"


@pytest.mark.parametrize("view", privileges.VIEWS)
def test_each_view_chooses_its_run_by_the_ranking(view: str) -> None:
    rank = ranking.LATEST_RANK if view.startswith("latest_") else ranking.PUBLISHED_RANK
    sql = newest_definitions()[view]
    assert re.search(chooses_like(rank), sql), (view, sql)
    assert "WHERE status = 'succeeded'" in sql


def test_the_latest_rank_ranks_by_snapshot_before_finish() -> None:
    assert ranking.LATEST_RANK == (
        "row_number() OVER (PARTITION BY model_name"
        " ORDER BY snapshot_order DESC, finished_at DESC, run_id DESC)"
    )
    assert ranking.PUBLISHED_RANK == (
        "row_number() OVER (PARTITION BY model_name, snapshot"
        " ORDER BY finished_at DESC, run_id DESC)"
    )
