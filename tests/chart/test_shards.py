"""A sharded release: the CronJob's Job is Indexed, one run over `shards` pods."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.helm import BASE_VALUES, CHART, Helm, HelmError, merged

JOB_NAME_FIELD = "metadata.labels['batch.kubernetes.io/job-name']"
INDEXED_KEYS = ("completionMode", "completions", "parallelism", "backoffLimitPerIndex")


def test_one_shard_renders_the_unsharded_cronjob(helm: Helm) -> None:
    implicit = helm.template(values=BASE_VALUES)
    explicit = helm.template(values=merged(BASE_VALUES, {"shards": 1, "parallelism": 1}))
    assert explicit.docs == implicit.docs
    job = implicit.job_spec
    assert job["backoffLimit"] == 2
    assert not set(INDEXED_KEYS) & set(job)
    assert "SCORER_SHARDS" not in implicit.env
    assert "SCORER_SHARD_TIMEOUT_SECONDS" not in implicit.env


def test_shards_make_an_indexed_job(helm: Helm) -> None:
    r = helm.template(values=merged(BASE_VALUES, {"shards": 4}))
    job = r.job_spec
    assert job["completionMode"] == "Indexed"
    assert job["completions"] == job["parallelism"] == 4
    assert job["backoffLimitPerIndex"] == 2
    assert job["maxFailedIndexes"] == 0  # a shard out of retries fails the Job
    assert "backoffLimit" not in job  # per index instead
    rules = job["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "FailJob"
    assert rules[0]["onExitCodes"]["values"] == [2]
    assert rules[1] == {
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    }
    assert r.env_value("SCORER_SHARDS") == "4"
    # One run id for every pod (the Job's name); the index is the Job's own JOB_COMPLETION_INDEX.
    assert r.env["SCORER_RUN_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == JOB_NAME_FIELD
    assert "SCORER_SHARD_INDEX" not in r.env
    assert r.pod["spec"]["restartPolicy"] == "Never"


REQUESTED_CPUS = {"containerName": "scorer", "resource": "requests.cpu", "divisor": "1"}


def test_a_shard_sizes_its_predict_threads_to_its_cpu_request(helm: Helm) -> None:
    sharded = helm.template(values=merged(BASE_VALUES, {"shards": 4}))
    threads = sharded.env["SCORER_PREDICT_THREADS"]
    assert threads["valueFrom"]["resourceFieldRef"] == REQUESTED_CPUS
    unsharded = helm.template(values=BASE_VALUES)
    assert "SCORER_PREDICT_THREADS" not in unsharded.env  # one pod: every CPU it may use


def test_no_cpu_request_leaves_the_predict_threads_to_the_scorer(helm: Helm) -> None:
    no_cpu = {"shards": 4, "resources": {"requests": {"cpu": None}}}  # null drops the default
    r = helm.template(values=merged(BASE_VALUES, no_cpu))
    assert "cpu" not in r.container["resources"]["requests"]
    assert "SCORER_PREDICT_THREADS" not in r.env  # a request of 0 CPUs would mean 0 threads


def test_the_env_value_overrides_the_requested_predict_threads(helm: Helm) -> None:
    env = [{"name": "SCORER_PREDICT_THREADS", "value": "3"}]
    r = helm.template(values=merged(BASE_VALUES, {"shards": 4, "env": env}))
    assert r.env_value("SCORER_PREDICT_THREADS") == "3"  # listed after the chart's own


def test_parallelism_lowers_the_pods_at_once(helm: Helm) -> None:
    r = helm.template(
        values=merged(
            BASE_VALUES,
            {"shards": 6, "parallelism": 2, "backoffLimitPerIndex": 0, "shardTimeoutSeconds": 600},
        )
    )
    job = r.job_spec
    assert (job["completions"], job["parallelism"], job["backoffLimitPerIndex"]) == (6, 2, 0)
    assert r.env_value("SCORER_SHARD_TIMEOUT_SECONDS") == "600"


def test_ci_scenario_is_sharded(helm: Helm) -> None:
    r = helm.template(CHART / "ci" / "shards-values.yaml")
    assert (r.job_spec["completions"], r.job_spec["parallelism"]) == (3, 2)


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"shards": 0}, "/shards"),
        ({"shards": 65}, "/shards"),
        ({"shards": "3"}, "/shards"),
        ({"parallelism": 0}, "/parallelism"),
        ({"backoffLimitPerIndex": -1}, "/backoffLimitPerIndex"),
        ({"shardTimeoutSeconds": 0}, "/shardTimeoutSeconds"),
        ({"shards": 3, "parallelism": 4}, "parallelism (4) must not exceed shards (3)"),
    ],
    ids=[
        "zero",
        "above-max",
        "string",
        "parallelism-zero",
        "negative-retries",
        "timeout",
        "parallelism-above-shards",
    ],
)
def test_bad_shard_values_are_refused(helm: Helm, values: dict[str, object], error: str) -> None:
    with pytest.raises(HelmError, match=error.replace("(", r"\(").replace(")", r"\)")):
        helm.template(values=merged(BASE_VALUES, values))


def test_the_backfill_job_never_shards(helm: Helm) -> None:
    r = helm.template(
        values=merged(
            BASE_VALUES,
            {
                "shards": 3,
                "features": {"snapshotColumn": "snapshot_date"},
                "backfill": {"enabled": True, "from": "2026-10-01", "to": "2026-10-31"},
            },
        )
    )
    backfill = r.backfill["spec"]
    assert not set(INDEXED_KEYS) & set(backfill)
    (container,) = backfill["template"]["spec"]["containers"]
    assert "SCORER_SHARDS" not in {entry["name"] for entry in container["env"]}
    assert r.job_spec["completions"] == 3  # the CronJob's Job still does


def test_notes_explain_one_off_runs_of_a_sharded_release(helm: Helm, kubeconfig: Path) -> None:
    notes = helm.notes(kubeconfig, values=merged(BASE_VALUES, {"shards": 3}), release="nightly")
    assert "kubectl create job --from=cronjob/nightly-scorer nightly-scorer-manual-" in notes
    assert "Each run has 3 shards" in notes
    assert "The one-off Job above is a\n  sharded run of its own, with the same 3 shards" in notes
    assert "-L batch.kubernetes.io/job-completion-index" in notes
    assert "backoffLimitPerIndex=2 per shard" in notes
    single = helm.notes(kubeconfig, values=BASE_VALUES, release="nightly")
    assert "shards" not in single
