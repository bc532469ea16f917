"""Run metrics against the real Pushgateway: what each kind of run leaves there, read back.

Every run is a real ``python -m scorer run`` process pushing to a Pushgateway built by
``hack/prometheus.sh`` and started on loopback; the tests scrape its ``/metrics`` and parse it
with ``prometheus_client.parser``. Each test pushes under a release label of its own, so its
group is its own.
"""

from __future__ import annotations

import math
import secrets
import socket
import subprocess
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from scorer.run import metrics
from tests.support import fixtures, services
from tests.support.stack import CUSTOMERS, FEATURES_TABLE, ChurnModel

pytestmark = pytest.mark.integration

ROWS = 4_000


@pytest.fixture(scope="module")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real Pushgateway on loopback, for this module."""
    with services.pushgateway(tmp_path_factory.mktemp("pushgateway")) as url:
        yield url


@pytest.fixture
def release() -> str:
    return f"rel-{secrets.token_hex(4)}"


@pytest.fixture
def env(scorer_env: dict[str, str], pushgateway: str, release: str) -> dict[str, str]:
    return {
        **scorer_env,
        "SCORER_PUSHGATEWAY_URL": pushgateway,
        "SCORER_RELEASE": release,
        "SCORER_K8S_NAMESPACE": "scoring-it",
    }


def group(url: str, release: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """This release's pushed series, by metric name: (labels without the grouping key, value).

    Fails if a series of the group carries an ``instance`` label or another job.
    """
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in services.scrape(url):
        for sample in family.samples:
            labels = dict(sample.labels)
            if labels.get("release") != release:
                continue
            assert labels.pop("job") == metrics.JOB
            assert labels.pop("namespace") == "scoring-it"
            assert labels.pop("model") == "churn-test"
            assert labels.pop("instance", "") == ""
            del labels["release"]
            found.setdefault(sample.name, []).append((labels, sample.value))
    return found


def value(found: dict[str, list[tuple[dict[str, str], float]]], name: str) -> float:
    (series,) = found[name]
    return series[1]


def one_hot(found: dict[str, list[tuple[dict[str, str], float]]], name: str) -> str:
    """The label value set to 1 in an enum-style metric (every other one 0)."""
    ones = [labels for labels, v in found[name] if v == 1]
    assert len(ones) == 1, found[name]
    assert all(v == 0 for labels, v in found[name] if labels not in ones)
    return next(iter(ones[0].values()))


def summary(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    return services.json_lines(result.stdout)[-1]


def run(env: dict[str, str], run_id: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return services.run_scorer({**env, "SCORER_RUN_ID": run_id, **extra}, "run")


def test_a_succeeded_run_pushes_its_outcome_rows_and_model(
    env: dict[str, str], pushgateway: str, release: str, churn_model: ChurnModel
) -> None:
    result = run(env, "metrics-ok")
    assert result.returncode == 0, result.stdout + result.stderr
    line = summary(result)
    assert line["metrics"]["pushgateway"] == "pushed"
    found = group(pushgateway, release)
    assert set(metrics.METRICS) <= set(found)
    assert value(found, "scorer_last_success_timestamp_seconds") == value(
        found, "scorer_last_run_timestamp_seconds"
    )
    assert one_hot(found, "scorer_last_run_outcome") == "succeeded"
    assert found["scorer_last_run_exit_code"] == [({"kind": "none"}, 0.0)]
    assert value(found, "scorer_last_run_rows_read") == CUSTOMERS
    assert value(found, "scorer_last_run_rows_scored") == CUSTOMERS
    assert value(found, "scorer_last_run_rows_rejected") == 0
    assert value(found, "scorer_last_run_score_mean") == pytest.approx(line["score_mean"])
    assert math.isnan(value(found, "scorer_last_run_score_psi"))  # a first run: no reference
    assert one_hot(found, "scorer_last_run_quality_gate") == "no_reference"
    assert value(found, "scorer_last_run_duration_seconds") > 0
    assert found["scorer_last_run_info"] == [
        (
            {
                "run_id": "metrics-ok",
                "model_version": str(churn_model.champion),
                "snapshot": line["snapshot"],
            },
            1.0,
        )
    ]


def test_a_gate_refusal_and_a_failure_keep_the_last_success(
    env: dict[str, str], pushgateway: str, release: str, postgres_url: str
) -> None:
    table = f"features.metrics_{secrets.token_hex(4)}"
    env = {**env, "SCORER_FEATURES_TABLE": table}
    fixtures.load_features(postgres_url, table, fixtures.synthetic_customers(ROWS, seed=1))
    assert run(env, "night-1").returncode == 0
    success = value(group(pushgateway, release), "scorer_last_success_timestamp_seconds")

    # The upstream load lands half the customers: the gate refuses (exit 2).
    fixtures.load_features(postgres_url, table, fixtures.synthetic_customers(ROWS // 2, seed=2))
    refused = run(env, "night-2")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert summary(refused)["metrics"]["pushgateway"] == "pushed"
    found = group(pushgateway, release)
    assert one_hot(found, "scorer_last_run_outcome") == "refused"
    assert found["scorer_last_run_exit_code"] == [({"kind": "quality_gate"}, 2.0)]
    assert one_hot(found, "scorer_last_run_quality_gate") == "refused"
    assert value(found, "scorer_last_run_rows_read") == ROWS // 2
    psi = value(found, "scorer_last_run_score_psi")
    assert psi == pytest.approx(summary(refused)["quality"]["checks"][0]["value"])
    assert value(found, "scorer_last_run_timestamp_seconds") > success
    assert value(found, "scorer_last_success_timestamp_seconds") == success
    assert found["scorer_last_run_info"][0][0]["run_id"] == "night-2"

    # A run that fails before anything is scored: the model's alias does not exist.
    failed = run(env, "night-3", SCORER_MODEL_ALIAS="no-such-alias")
    assert failed.returncode == 2, failed.stdout + failed.stderr
    assert summary(failed)["kind"] == "model_not_found"
    found = group(pushgateway, release)
    assert one_hot(found, "scorer_last_run_outcome") == "failed"
    assert found["scorer_last_run_exit_code"] == [({"kind": "model_not_found"}, 2.0)]
    assert one_hot(found, "scorer_last_run_quality_gate") == "not_run"
    assert value(found, "scorer_last_run_rows_read") == 0
    assert math.isnan(value(found, "scorer_last_run_score_mean"))
    assert math.isnan(value(found, "scorer_last_run_score_psi"))
    assert found["scorer_last_run_info"] == [
        ({"run_id": "night-3", "model_version": "", "snapshot": ""}, 1.0)
    ]
    assert value(found, "scorer_last_success_timestamp_seconds") == success


def test_a_sharded_run_pushes_once_from_the_shard_that_publishes(
    env: dict[str, str], pushgateway: str, release: str
) -> None:
    run_id = f"metrics-shards-{secrets.token_hex(3)}"
    processes = [
        services.start_scorer(services.shard_env(env, run_id, 3, index), "run")
        for index in (2, 0, 1)
    ]
    ends = [services.finish_scorer(process) for process in processes]
    assert [code for code, _, _ in ends] == [0, 0, 0], ends
    pushes = [lines[-1]["metrics"]["pushgateway"] for _, lines, _ in ends]
    assert sorted(pushes) == ["pushed", "skipped", "skipped"]
    found = group(pushgateway, release)
    assert one_hot(found, "scorer_last_run_outcome") == "succeeded"
    assert value(found, "scorer_last_run_rows_read") == CUSTOMERS  # the whole run's, merged
    assert value(found, "scorer_last_run_rows_scored") == CUSTOMERS
    assert found["scorer_last_run_info"][0][0]["run_id"] == run_id


def test_a_sharded_run_that_fails_pushes_its_failure_once(
    env: dict[str, str], pushgateway: str, release: str, postgres_url: str
) -> None:
    # One entity id twice, in shard 1's range: shard 1 fails the run (exit 2).
    view = f"features.metrics_dup_{secrets.token_hex(4)}"
    columns = ", ".join(fixtures.NUMERIC_FEATURES)
    services.execute(
        postgres_url,
        f"CREATE VIEW {view} AS SELECT customer_id, {columns} FROM {FEATURES_TABLE}"
        f" UNION ALL SELECT customer_id, {columns} FROM {FEATURES_TABLE}"
        f" WHERE customer_id = {CUSTOMERS - 10}",
    )
    env = {**env, "SCORER_FEATURES_TABLE": view}
    run_id = f"metrics-shards-fail-{secrets.token_hex(3)}"
    try:
        first = services.finish_scorer(
            services.start_scorer(services.shard_env(env, run_id, 2, 0), "run")
        )
        second = services.finish_scorer(
            services.start_scorer(services.shard_env(env, run_id, 2, 1), "run")
        )
        late = services.finish_scorer(
            services.start_scorer(services.shard_env(env, run_id, 2, 0), "run")
        )
    finally:
        services.execute(postgres_url, f"DROP VIEW {view}")
    assert (first[0], first[1][-1]["metrics"]["pushgateway"]) == (0, "skipped"), first
    assert (second[0], second[1][-1]["kind"]) == (2, "duplicate_entity"), second
    assert second[1][-1]["metrics"]["pushgateway"] == "pushed"
    # A shard that starts after the run failed refuses (run_failed) and pushes nothing.
    assert (late[0], late[1][-1]["kind"]) == (2, "run_failed"), late
    assert late[1][-1]["metrics"]["pushgateway"] == "skipped"
    found = group(pushgateway, release)
    assert one_hot(found, "scorer_last_run_outcome") == "failed"
    assert found["scorer_last_run_exit_code"] == [({"kind": "duplicate_entity"}, 2.0)]
    assert found["scorer_last_run_info"][0][0]["run_id"] == run_id
    assert "scorer_last_success_timestamp_seconds" not in found


def test_a_pushgateway_that_is_down_changes_no_exit_code(
    env: dict[str, str], postgres_url: str
) -> None:
    down = f"http://127.0.0.1:{services.free_port()}"
    ok = run({**env, "SCORER_PUSHGATEWAY_URL": down}, "metrics-down-ok")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    lines = services.json_lines(ok.stdout)
    (warning,) = [line for line in lines if line["event"] == "metrics.push_failed"]
    assert warning["level"] == "warning"
    assert "Connection refused" in warning["error"] or "URLError" in warning["error"]
    assert lines[-1]["event"] == "run.succeeded"
    assert lines[-1]["metrics"]["pushgateway"] == "failed"

    failed = run(
        {**env, "SCORER_PUSHGATEWAY_URL": down}, "metrics-down-bad", SCORER_MODEL_ALIAS="x"
    )
    assert failed.returncode == 2, failed.stdout + failed.stderr
    assert "metrics.push_failed" in services.events(failed.stdout)
    assert summary(failed)["kind"] == "model_not_found"


def test_a_pushgateway_that_never_answers_is_cut_off_at_the_timeout(
    env: dict[str, str], tmp_path: Path
) -> None:
    # A socket that listens but never accepts: the connection opens, no answer ever comes.
    with closing(socket.socket()) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        result = run(
            {
                **env,
                "SCORER_PUSHGATEWAY_URL": f"http://127.0.0.1:{port}",
                "SCORER_PUSHGATEWAY_TIMEOUT_SECONDS": "1",
            },
            "metrics-silent",
        )
    assert result.returncode == 0, result.stdout + result.stderr
    (warning,) = [
        line
        for line in services.json_lines(result.stdout)
        if line["event"] == "metrics.push_failed"
    ]
    assert "timed out" in warning["error"].lower() or "Timeout" in warning["error"]
