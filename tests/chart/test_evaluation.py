"""`evaluation.*`: a CronJob running `scorer evaluate` with the scoring pod's security, database
and TLS settings, and a prune that keeps the runs it has not evaluated yet."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tests.support.helm import BASE_VALUES, CHART, Helm, HelmError, Rendered, merged

EVALUATION = {
    "enabled": True,
    "outcomesTable": "outcomes.churn",
    "entityColumn": "customer_id",
    "outcomeColumn": "churned",
    "timeColumn": "observed_on",
    "horizonDays": 30,
}
OUTCOME_ENV = {
    "SCORER_OUTCOMES_TABLE": "outcomes.churn",
    "SCORER_OUTCOME_ENTITY_COLUMN": "customer_id",
    "SCORER_OUTCOME_COLUMN": "churned",
    "SCORER_OUTCOME_TIME_COLUMN": "observed_on",
    "SCORER_OUTCOME_HORIZON_DAYS": "30",
}


def render(helm: Helm, **evaluation: Any) -> Rendered:
    values = merged(BASE_VALUES, {"evaluation": {**EVALUATION, **evaluation}})
    return helm.template(values=values, release="nightly")


def evaluation_job(r: Rendered) -> dict[str, Any]:
    cronjob = r.evaluation_cronjob
    assert cronjob is not None
    return copy.deepcopy(cronjob["spec"]["jobTemplate"]["spec"])


def env_of(job: dict[str, Any]) -> dict[str, str | None]:
    (container,) = job["template"]["spec"]["containers"]
    return {item["name"]: item.get("value") for item in container["env"]}


def test_off_by_default(helm: Helm) -> None:
    r = helm.template(values=BASE_VALUES, release="nightly")
    assert r.evaluation_cronjob is None
    assert not any(name.startswith("SCORER_OUTCOME") for name in r.env)


def test_the_cronjob_runs_evaluate_in_the_scoring_pod(helm: Helm) -> None:
    r = render(helm)
    cronjob = r.evaluation_cronjob
    assert cronjob is not None
    assert cronjob["metadata"]["name"] == "nightly-scorer-evaluate"
    assert cronjob["metadata"]["labels"]["app.kubernetes.io/component"] == "evaluate"
    assert cronjob["spec"]["schedule"] == "0 6 * * *"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    job = evaluation_job(r)
    assert job["activeDeadlineSeconds"] == 3600
    (container,) = job["template"]["spec"]["containers"]
    assert container.pop("args") == ["evaluate"]
    env = env_of(job)
    assert {name: env[name] for name in OUTCOME_ENV} == OUTCOME_ENV
    assert "SCORER_MIN_REALIZED_AUC" not in env
    assert "SCORER_COMPARE_TOP_SHARE" not in env
    assert env["SCORER_MODEL_NAME"] == "churn"  # evaluates this release's model's runs
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.mlflow.svc:5000"  # its metrics go there

    # The scoring pod otherwise: security contexts, volumes, failure policy, database Secret.
    scheduled = copy.deepcopy(r.job_spec)
    for spec in (job, scheduled):
        spec["template"]["metadata"]["labels"].pop("app.kubernetes.io/component", None)
        for container in spec["template"]["spec"]["containers"]:
            container["env"] = [e for e in container["env"] if e["name"] not in OUTCOME_ENV]
    assert job == scheduled


def test_limits_reevaluation_and_top_share(helm: Helm) -> None:
    r = render(helm, minRealizedAuc=0.62, topShare=0.05, reevaluate=True, schedule="0 7 * * 1")
    job = evaluation_job(r)
    env = env_of(job)
    assert (env["SCORER_MIN_REALIZED_AUC"], env["SCORER_COMPARE_TOP_SHARE"]) == ("0.62", "0.05")
    assert job["template"]["spec"]["containers"][0]["args"] == ["evaluate", "--reevaluate"]
    assert r.evaluation_cronjob is not None
    assert r.evaluation_cronjob["spec"]["schedule"] == "0 7 * * 1"


def test_prune_keeps_what_is_not_evaluated_yet(helm: Helm) -> None:
    values = merged(BASE_VALUES, {"evaluation": EVALUATION, "retention": {"keepRuns": 7}})
    r = helm.template(values=values, release="nightly")
    prune = r.prune_cronjob
    assert prune is not None
    env = env_of(prune["spec"]["jobTemplate"]["spec"])
    assert (env["SCORER_OUTCOMES_TABLE"], env["SCORER_OUTCOME_HORIZON_DAYS"]) == (
        "outcomes.churn",
        "30",
    )


def test_tls_reaches_the_evaluation_pod(helm: Helm) -> None:
    tls = {"caSecret": "db-ca", "sslmode": "verify-full"}
    values = merged(BASE_VALUES, {"evaluation": EVALUATION, "database": {"tls": tls}})
    job = evaluation_job(helm.template(values=values, release="nightly"))
    env = env_of(job)
    assert env["PGSSLMODE"] == "verify-full"
    assert env["PGSSLROOTCERT"] == "/etc/scorer/tls/ca.crt"
    volumes = [v["name"] for v in job["template"]["spec"]["volumes"]]
    assert volumes == ["tmp", "database-ca"]


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"outcomesTable": ""}, "outcomesTable"),
        ({"horizonDays": None}, "horizonDays"),
        ({"horizonDays": 0}, "/evaluation/horizonDays"),
        ({"outcomesTable": "a.b.c"}, "/evaluation/outcomesTable"),
        ({"minRealizedAuc": 1.5}, "/evaluation/minRealizedAuc"),
        ({"topShare": 0}, "/evaluation/topShare"),
        ({"outcomeColum": "churned"}, "additional properties 'outcomeColum' not allowed"),
    ],
    ids=["no-table", "no-horizon", "horizon-0", "bad-table", "auc-above-1", "share-0", "typo"],
)
def test_schema_rejects_bad_values(helm: Helm, change: dict[str, Any], fragment: str) -> None:
    with pytest.raises(HelmError, match=fragment):
        render(helm, **change)


def test_a_long_release_name_leaves_room_for_the_evaluation_cronjob(helm: Helm) -> None:
    values = merged(BASE_VALUES, {"evaluation": EVALUATION, "fullnameOverride": "x" * 45})
    with pytest.raises(HelmError, match="evaluation CronJob"):
        helm.template(values=values)


def test_notes_tell_how_to_evaluate_now(helm: Helm, kubeconfig: Path) -> None:
    values = merged(BASE_VALUES, {"evaluation": EVALUATION})
    notes = helm.notes(kubeconfig, values=values, release="nightly", namespace="ml")
    assert (
        "  kubectl create job --from=cronjob/nightly-scorer-evaluate"
        " nightly-scorer-evaluate-$(date +%s) -n ml"
    ) in notes.splitlines()


def test_the_ci_scenario_renders(helm: Helm) -> None:
    r = helm.template(CHART / "ci" / "evaluation-values.yaml")
    assert r.evaluation_cronjob is not None
    assert r.prune_cronjob is not None
