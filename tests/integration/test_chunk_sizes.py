"""Every allowed chunk size finishes and publishes the same thing: one row per chunk is slow,
not stuck (a chunk costs no COPY statement of its own, and a small one predicts on one
thread), and its scores are those of the default size, bit for bit."""

from __future__ import annotations

import pytest

from tests.support import fixtures, services
from tests.support.stack import ChurnModel

pytestmark = pytest.mark.integration

TABLE = "features.one_by_one"
ROWS = 1_500


def published(url: str, target: str, run_id: str) -> list[tuple[int, float, int]]:
    return services.query(
        url,
        f'SELECT entity_id, score, label FROM "{target}".predictions WHERE run_id = %s'
        " ORDER BY entity_id",
        (run_id,),
    )


def test_one_row_chunks_finish_and_publish_what_the_default_size_publishes(
    scorer_env: dict[str, str], postgres_url: str, target_schema: str, churn_model: ChurnModel
) -> None:
    with fixtures.loaded_customers(postgres_url, TABLE, ROWS, seed=23):
        env = {**scorer_env, "SCORER_FEATURES_TABLE": TABLE, "SCORER_PREDICT_THREADS": "2"}
        runs = {"default": {}, "one": {"SCORER_CHUNK_ROWS": "1"}}
        for run_id, extra in runs.items():
            result = services.run_scorer({**env, **extra, "SCORER_RUN_ID": run_id}, "run")
            assert result.returncode == 0, result.stdout + result.stderr
            summary = services.json_lines(result.stdout)[-1]
            assert (summary["rows_read"], summary["rows_scored"]) == (ROWS, ROWS)
        default = published(postgres_url, target_schema, "default")
        assert len(default) == ROWS
        assert published(postgres_url, target_schema, "one") == default
