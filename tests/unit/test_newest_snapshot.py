"""Partition bounds as ``pg_get_expr`` prints them, read for the largest value they allow."""

from __future__ import annotations

import pytest

from scorer.io import newest_snapshot


@pytest.mark.parametrize(
    ("bound", "uppers"),
    [
        ("FOR VALUES FROM ('2026-10-01') TO ('2026-11-01')", ["2026-11-01"]),
        ("FOR VALUES FROM (MINVALUE) TO (100)", ["100"]),
        ("FOR VALUES FROM ('-5') TO (MAXVALUE)", [None]),
        ("FOR VALUES IN ('2026-10-01', '2026-10-08')", ["2026-10-01", "2026-10-08"]),
        ("FOR VALUES IN (NULL)", []),  # holds no snapshot at all
        ("FOR VALUES IN (NULL, 7)", ["7"]),
        ("FOR VALUES IN ('NULL', 'it''s')", ["NULL", "it's"]),  # text values, not keywords
        ("FOR VALUES FROM ('a') TO ('MAXVALUE')", ["MAXVALUE"]),
        ("FOR VALUES FROM ('x, y') TO ('z) TO (')", ["z) TO ("]),
        ("DEFAULT", [None]),
    ],
)
def test_each_bound_gives_the_values_that_bound_it_from_above(
    bound: str, uppers: list[str | None]
) -> None:
    assert newest_snapshot._uppers(bound) == uppers
