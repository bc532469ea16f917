"""The newest snapshot without reading the whole history: partition bounds, an index, or a
warning naming the index to create.

Every statement the scorer runs is explained by PostgreSQL itself (``auto_explain`` at
level NOTICE, so the plans reach the test's connection), and the tables each plan read are
collected from them.
"""

from __future__ import annotations

import json
from contextlib import closing
from itertools import pairwise
from typing import Any

import psycopg2
import pytest
from structlog.testing import capture_logs

from scorer.io import features
from scorer.io.features import ModelInput, Source
from scorer.postgres.identifiers import Relation
from tests.support import fixtures, services

pytestmark = pytest.mark.integration

MONTHS = [f"2026-{month:02d}-01" for month in range(1, 13)]
INPUTS = tuple(ModelInput(name, "number", "double") for name in fixtures.TELCO_NUMBERS)


def scanned(plan: dict[str, Any], how: str = "Scan") -> set[str]:
    """The relations a plan (and its sub-plans) read by a node whose type contains ``how``."""
    found = set()
    if "Relation Name" in plan and how in plan["Node Type"]:
        found.add(plan["Relation Name"])
    for child in plan.get("Plans", []):
        found |= scanned(child, how)
    return found


def explained_plan(
    conn: psycopg2.extensions.connection, source: Source, how: str = "Scan"
) -> tuple[str, set[str]]:
    """``features.plan`` with every statement's plan explained: the snapshot it picked, and
    the relations its statements read (by a node whose type contains ``how``)."""
    with conn.cursor() as cur:
        cur.execute("LOAD 'auto_explain'")
        cur.execute(
            "SET auto_explain.log_min_duration = 0; SET auto_explain.log_level = notice;"
            " SET auto_explain.log_format = json; SET client_min_messages = notice"
        )
    del conn.notices[:]
    plan = features.plan(conn, source, INPUTS)
    read: set[str] = set()
    for notice in conn.notices:
        text = notice.split("plan:", 1)[1] if "plan:" in notice else ""
        if text.strip():
            read |= scanned(json.loads(text)["Plan"], how)
    return plan.snapshot.label, read


@pytest.fixture(scope="module")
def monthly(postgres_url: str) -> str:
    """``features.telco_months``: a year of monthly snapshots in a table partitioned by range
    on ``snapshot_date``, one partition per month, no index; also an empty DEFAULT partition
    and next month's partition created ahead, still empty."""
    frame = fixtures.telco_customers(100, snapshots=MONTHS)
    fixtures.load_table(postgres_url, "features.telco_flat", frame, fixtures.TELCO_TYPES)
    bounds = [*MONTHS, "2027-01-01", "2027-02-01"]
    services.execute(
        postgres_url,
        "DROP TABLE IF EXISTS features.telco_months;"
        " CREATE TABLE features.telco_months (LIKE features.telco_flat)"
        " PARTITION BY RANGE (snapshot_date);"
        " CREATE TABLE features.telco_months_default PARTITION OF features.telco_months DEFAULT;"
        + "".join(
            f" CREATE TABLE features.telco_months_{low[:7].replace('-', '_')} PARTITION OF"
            f" features.telco_months FOR VALUES FROM ('{low}') TO ('{high}');"
            for low, high in pairwise(bounds)
        )
        + " INSERT INTO features.telco_months SELECT * FROM features.telco_flat;"
        " ANALYZE features.telco_months;",
    )
    return "features.telco_months"


def test_the_newest_snapshot_of_a_partitioned_table_reads_only_the_newest_partition(
    postgres_url: str, monthly: str
) -> None:
    # What max() alone would read: every partition.
    ((naive,),) = services.query(
        postgres_url, f"EXPLAIN (FORMAT JSON) SELECT max(snapshot_date) FROM {monthly}"
    )
    assert len(scanned(naive[0]["Plan"])) == 14
    with closing(psycopg2.connect(postgres_url)) as conn:
        source = Source(Relation("features", "telco_months"), "customer_id", "snapshot_date")
        with capture_logs() as logs:
            label, read = explained_plan(conn, source)
    assert label == "2026-12-01"
    partitions = {name for name in read if name.startswith("telco_months")}
    # The newest non-empty partition, and the two that may hold newer rows but are empty.
    assert partitions == {"telco_months_2026_12", "telco_months_2027_01", "telco_months_default"}
    assert not [entry for entry in logs if entry["event"] == "features.snapshot_scan"]


def test_list_partitions_whose_values_interleave_still_give_the_newest(
    postgres_url: str,
) -> None:
    """A list partition's largest listed value bounds it: the walk goes on while a partition
    could hold a newer value than the newest found (here 5 is listed but absent)."""
    services.execute(
        postgres_url,
        "DROP TABLE IF EXISTS features.weeks;"
        " CREATE TABLE features.weeks (customer_id bigint, week int, tenure float8,"
        " monthly_charges float8, total_charges float8, paperless boolean)"
        " PARTITION BY LIST (week);"
        " CREATE TABLE features.weeks_a PARTITION OF features.weeks FOR VALUES IN (1, 5);"
        " CREATE TABLE features.weeks_b PARTITION OF features.weeks FOR VALUES IN (3);"
        " CREATE TABLE features.weeks_c PARTITION OF features.weeks FOR VALUES IN (2);"
        " CREATE TABLE features.weeks_n PARTITION OF features.weeks FOR VALUES IN (NULL);"
        " INSERT INTO features.weeks VALUES (1, 1, 1, 1, 1, true), (2, 3, 1, 1, 1, true),"
        " (3, 2, 1, 1, 1, true), (4, NULL, 1, 1, 1, true);",
    )
    source = Source(Relation("features", "weeks"), "customer_id", "week")
    with closing(psycopg2.connect(postgres_url)) as conn:
        label, read = explained_plan(conn, source)
    assert label == "3"
    assert {name for name in read if name.startswith("weeks")} == {"weeks_a", "weeks_b"}


def test_without_an_index_or_partition_key_a_warning_names_the_index_to_create(
    postgres_url: str, monthly: str
) -> None:
    flat = Source(Relation("features", "telco_flat"), "customer_id", "snapshot_date")
    with closing(psycopg2.connect(postgres_url)) as conn:
        with capture_logs() as logs:
            assert features.plan(conn, flat, INPUTS).snapshot.label == "2026-12-01"
        (warning,) = [entry for entry in logs if entry["event"] == "features.snapshot_scan"]
        assert warning["log_level"] == "warning"
        assert 'CREATE INDEX ON "features"."telco_flat" ("snapshot_date")' in warning["detail"]
        services.execute(postgres_url, "CREATE INDEX ON features.telco_flat (snapshot_date)")
        with capture_logs() as logs:
            label, read = explained_plan(conn, flat, how="Seq Scan")
    assert label == "2026-12-01"
    assert "telco_flat" not in read  # read through the index, not row by row
    assert not [entry for entry in logs if entry["event"] == "features.snapshot_scan"]
