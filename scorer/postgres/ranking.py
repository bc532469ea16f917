"""The "latest" rule: which succeeded run each consumer view shows, written once.

``latest_predictions*`` show, per model, the newest snapshot's latest succeeded run (so a
backfill of an older snapshot never displaces it); ``published_predictions*`` show, per
(model, snapshot), its latest succeeded run. The views spell the rule out in their migration
(0003), which never changes; retention and history rank runs with these expressions over
``scoring_runs`` rows. tests/unit/test_ranking.py checks that the views' SQL orders runs by
these, and tests/integration/test_latest_rule.py that views, prune and explain agree on data.
"""

from __future__ import annotations

LATEST_ORDER = "snapshot_order DESC, finished_at DESC, run_id DESC"
"""A model's runs, the one ``latest_predictions`` shows first: newest snapshot (by how its
snapshot sorts), then latest finished; the run id breaks a tie."""

PUBLISHED_ORDER = "finished_at DESC, run_id DESC"
"""One snapshot's runs of a model, the one ``published_predictions`` shows first."""

LATEST_RANK = f"row_number() OVER (PARTITION BY model_name ORDER BY {LATEST_ORDER})"
"""A run's place among its model's ranked rows (1: the run ``latest_predictions`` shows, when
the rows ranked are the succeeded ones)."""

PUBLISHED_RANK = f"row_number() OVER (PARTITION BY model_name, snapshot ORDER BY {PUBLISHED_ORDER})"
"""A run's place among its model's ranked rows of its snapshot (1: the run
``published_predictions`` shows, when the rows ranked are the succeeded ones)."""


def apart(rank: str, column: str) -> str:
    """``rank`` with the rows ranked apart by ``column`` as well: retention ranks shadow runs
    (``scorer.run.shadow``), which no view shows, apart from the published ones."""
    return rank.replace("PARTITION BY model_name", f"PARTITION BY model_name, {column}", 1)
