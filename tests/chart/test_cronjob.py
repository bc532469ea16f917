"""Render the chart and check the objects: the CronJob, its Job and pod, and the wiring."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.helm import (
    BASE_VALUES,
    CHART,
    CI_VALUES,
    ENV_VALUES,
    Helm,
    HelmError,
    Rendered,
    merged,
)

APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
CHART_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
CI = {path.name.removesuffix("-values.yaml"): path for path in CI_VALUES}
SCENARIOS = {f"env-{env}": path for env, path in ENV_VALUES.items()} | {
    f"ci-{name}": path for name, path in CI.items()
}
SELECTORS = ("SCORER_MODEL_ALIAS", "SCORER_MODEL_STAGE", "SCORER_MODEL_VERSION")
JOB_NAME_FIELD = "metadata.labels['batch.kubernetes.io/job-name']"


@pytest.fixture(scope="module")
def renders(helm: Helm) -> dict[str, Rendered]:
    """Every environment and CI scenario, rendered once as release `scorer` in namespace `ml`."""
    return {name: helm.template(path) for name, path in SCENARIOS.items()}


@pytest.fixture(scope="module")
def base(helm: Helm) -> Rendered:
    return helm.template(values=BASE_VALUES, release="nightly")


def field_ref(entry: dict[str, Any]) -> str:
    return entry["valueFrom"]["fieldRef"]["fieldPath"]


def secret_ref(entry: dict[str, Any]) -> dict[str, Any]:
    return entry["valueFrom"]["secretKeyRef"]


# --- invariants every scenario keeps -------------------------------------------------------


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_invariants(renders: dict[str, Rendered], scenario: str) -> None:
    r = renders[scenario]
    cronjob, job, pod, container = r.cronjob, r.job_spec, r.pod, r.container
    assert cronjob["apiVersion"] == "batch/v1"
    assert set(r.kinds()) <= {
        "CronJob", "ServiceAccount", "Secret", "Job", "Pod", "NetworkPolicy",
        "PrometheusRule", "ConfigMap",  # the opt-in alerts and dashboard (ci/metrics-values.yaml)
    }  # fmt: skip
    assert isinstance(cronjob["spec"]["schedule"], str)
    assert cronjob["metadata"]["namespace"] == "ml"

    # podFailurePolicy needs restartPolicy Never; exit code 2 fails the Job at once.
    assert pod["spec"]["restartPolicy"] == "Never"
    fail_rule = job["podFailurePolicy"]["rules"][0]
    assert fail_rule["action"] == "FailJob"
    assert fail_rule["onExitCodes"]["containerName"] == container["name"] == "scorer"
    assert fail_rule["onExitCodes"]["operator"] == "In"
    assert 2 in fail_rule["onExitCodes"]["values"]

    # Restricted Pod Security.
    psc = pod["spec"]["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["runAsUser"] == psc["runAsGroup"] == psc["fsGroup"] == 10001
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    csc = container["securityContext"]
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["capabilities"] == {"drop": ["ALL"]}
    assert pod["spec"]["automountServiceAccountToken"] is False

    # A writable /tmp on a read-only root; nothing else but the database's CA when one is set
    # (tests/chart/test_tls.py).
    mounts = container["volumeMounts"]
    assert mounts[0] == {"name": "tmp", "mountPath": "/tmp"}  # noqa: S108 - a path in the pod
    volume, *others = pod["spec"]["volumes"]
    assert volume["name"] == "tmp"
    assert "emptyDir" in volume
    assert (
        [v["name"] for v in others]
        == [m["name"] for m in mounts[1:]]
        == (["database-ca"] if scenario == "ci-tls" else [])
    )

    # Exactly one model selector reaches the scorer; the database URL only from a Secret.
    env = r.env
    assert sum(name in env for name in SELECTORS) == 1
    assert "value" not in env["SCORER_DATABASE_URL"]
    assert secret_ref(env["SCORER_DATABASE_URL"])["name"]
    # Lineage from the downward API.
    assert field_ref(env["SCORER_RUN_ID"]) == JOB_NAME_FIELD
    assert field_ref(env["SCORER_K8S_JOB"]) == JOB_NAME_FIELD
    assert field_ref(env["SCORER_K8S_NAMESPACE"]) == "metadata.namespace"
    assert field_ref(env["SCORER_K8S_POD"]) == "metadata.name"
    assert field_ref(env["SCORER_K8S_NODE"]) == "spec.nodeName"
    assert r.env_value("SCORER_K8S_CRONJOB") == cronjob["metadata"]["name"]
    assert r.env_value("SCORER_IMAGE") == container["image"]

    # The model label on the CronJob, the Job template and the pod template.
    model_label = cronjob["metadata"]["labels"]["scorer.dev/model"]
    assert model_label
    assert cronjob["spec"]["jobTemplate"]["metadata"]["labels"]["scorer.dev/model"] == model_label
    assert pod["metadata"]["labels"]["scorer.dev/model"] == model_label
    # No variable twice, except where the user's `env` deliberately overrides one.
    names = [entry["name"] for entry in container["env"]]
    assert len(names) - len(set(names)) <= 1


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_active_deadline_shorter_than_schedule_interval(
    renders: dict[str, Rendered], scenario: str
) -> None:
    spec = renders[scenario].cronjob["spec"]
    deadline = spec["jobTemplate"]["spec"].get("activeDeadlineSeconds")
    if deadline is not None:
        assert deadline < schedule_interval_seconds(spec["schedule"])


def schedule_interval_seconds(schedule: str) -> int:
    """The shortest interval of the simple schedules used here (step minutes, daily, weekly)."""
    minute, hour, dom, month, _dow = schedule.split()
    if minute.startswith("*/"):
        return int(minute[2:]) * 60
    assert minute.isdigit(), schedule
    assert dom == month == "*", schedule
    if hour.isdigit():
        return 86_400
    raise AssertionError(f"no interval rule for {schedule!r}")


# --- defaults --------------------------------------------------------------------------------


def test_defaults(base: Rendered) -> None:
    cronjob = base.cronjob
    spec = cronjob["spec"]
    # The Pod: `helm test`; a Job and a ServiceAccount: the migration hook's (test_migrate.py).
    assert base.kinds() == ["CronJob", "Job", "Pod", "ServiceAccount", "ServiceAccount"]
    assert [doc["kind"] for doc in base.docs if doc in base.hooks(doc["kind"])] == [
        "ServiceAccount",
        "Job",
    ]
    assert cronjob["metadata"]["name"] == "nightly-scorer"
    assert spec["schedule"] == "0 3 * * *"
    assert "timeZone" not in spec
    assert spec["suspend"] is False
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] == 600
    assert spec["successfulJobsHistoryLimit"] == 3
    assert spec["failedJobsHistoryLimit"] == 3
    job = base.job_spec
    assert job["backoffLimit"] == 2
    assert job["activeDeadlineSeconds"] == 3600
    assert "ttlSecondsAfterFinished" not in job
    assert job["podFailurePolicy"] == {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {"containerName": "scorer", "operator": "In", "values": [2]},
            },
            {
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            },
        ]
    }
    assert base.pod["spec"]["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]
    assert base.container["resources"] == {
        "requests": {"cpu": "250m", "memory": "512Mi", "ephemeral-storage": "1Gi"},
        "limits": {"memory": "2Gi", "ephemeral-storage": "2Gi"},
    }
    assert "args" not in base.container
    assert "imagePullSecrets" not in base.pod["spec"]


def test_default_image_tag_is_app_version(base: Rendered) -> None:
    assert APP_VERSION == "0.1.0"
    assert base.container["image"] == f"scorer:{APP_VERSION}"
    assert base.container["imagePullPolicy"] == "IfNotPresent"
    assert base.env_value("SCORER_IMAGE") == f"scorer:{APP_VERSION}"


def test_labels(base: Rendered) -> None:
    expected = {
        "helm.sh/chart": f"scorer-{CHART_VERSION}",
        "app.kubernetes.io/name": "scorer",
        "app.kubernetes.io/instance": "nightly",
        "app.kubernetes.io/version": APP_VERSION,
        "app.kubernetes.io/managed-by": "Helm",
        "scorer.dev/model": "churn",
    }
    assert base.cronjob["metadata"]["labels"] == expected
    assert base.cronjob["spec"]["jobTemplate"]["metadata"]["labels"] == expected
    assert base.pod["metadata"]["labels"] == expected
    sa = base.one("ServiceAccount")
    assert sa["metadata"]["name"] == "nightly-scorer"
    assert sa["automountServiceAccountToken"] is False
    assert base.pod["spec"]["serviceAccountName"] == "nightly-scorer"


def test_env_only_sets_what_is_set(base: Rendered) -> None:
    """Unset optional values leave the scorer's own defaults in force."""
    assert base.env_value("MLFLOW_TRACKING_URI") == "http://mlflow.mlflow.svc:5000"
    assert base.env_value("SCORER_MODEL_NAME") == "churn"
    assert base.env_value("SCORER_MODEL_ALIAS") == "champion"
    assert base.env_value("SCORER_FEATURES_TABLE") == "features.customers"
    assert base.env_value("SCORER_ENTITY_COLUMN") == "customer_id"
    assert base.env_value("SCORER_LOG_FORMAT") == "json"
    assert base.env_value("SCORER_SCORE_KIND") == "probability"
    assert secret_ref(base.env["SCORER_DATABASE_URL"]) == {"name": "scorer-database", "key": "url"}
    assert base.env_value("SCORER_K8S_CRONJOB") == "nightly-scorer"
    for absent in (
        "SCORER_MODEL_STAGE",
        "SCORER_MODEL_VERSION",
        "SCORER_REQUIRE_ALIAS",
        "SCORER_REQUIRE_STAGE",
        "SCORER_POSITIVE_CLASS",
        "SCORER_SNAPSHOT_COLUMN",
        "SCORER_SNAPSHOT",
        "SCORER_THRESHOLD",
        "SCORER_CHUNK_ROWS",
        "SCORER_MAX_REJECTED_RATIO",
        "SCORER_REASONS",
        "SCORER_REASONS_METHOD",
        "SCORER_TARGET_SCHEMA",
        "SCORER_MAX_SCORE_PSI",
        "SCORER_MIN_ROWS_RATIO",
        "SCORER_MAX_NULL_SHARE_INCREASE",
        "SCORER_MAX_FEATURE_PSI",
        "SCORER_QUALITY_OVERRIDE",
        "SCORER_LOG_LEVEL",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_TRACKING_TOKEN",
    ):
        assert absent not in base.env, absent
    assert "envFrom" not in base.container


# --- CI scenarios ----------------------------------------------------------------------------


def test_alias_scenario(renders: dict[str, Rendered]) -> None:
    r = renders["ci-alias"]
    assert r.env_value("SCORER_MODEL_ALIAS") == "champion"
    assert r.cronjob["metadata"]["name"] == "scorer"  # the release name contains the chart name
    assert r.container["image"] == "scorer:0.1.0"


def test_stage_scenario_with_custom_secret_keys(renders: dict[str, Rendered]) -> None:
    r = renders["ci-stage"]
    spec = r.cronjob["spec"]
    assert spec["schedule"] == "30 1 * * 1-5"
    assert spec["timeZone"] == "Europe/Paris"
    assert r.env_value("SCORER_MODEL_STAGE") == "Production"
    assert r.env_value("SCORER_SNAPSHOT") == "2024-06-30"
    assert r.env_value("MLFLOW_TRACKING_URI") == "https://mlflow.example.internal"
    assert secret_ref(r.env["SCORER_DATABASE_URL"]) == {
        "name": "warehouse-credentials",
        "key": "SCORER_URL",
    }
    assert secret_ref(r.env["MLFLOW_TRACKING_USERNAME"]) == {
        "name": "mlflow-credentials",
        "key": "MLFLOW_USER",
        "optional": True,
    }
    assert secret_ref(r.env["MLFLOW_TRACKING_PASSWORD"]) == {
        "name": "mlflow-credentials",
        "key": "MLFLOW_PASS",
        "optional": True,
    }
    assert "MLFLOW_TRACKING_TOKEN" not in r.env  # tokenKey: ""


def test_version_gate_scenario(renders: dict[str, Rendered]) -> None:
    r = renders["ci-version-gate"]
    spec = r.cronjob["spec"]
    # 0 is honoured, not dropped as "empty".
    assert spec["successfulJobsHistoryLimit"] == 0
    assert spec["failedJobsHistoryLimit"] == 0
    assert "startingDeadlineSeconds" not in spec  # null unsets it
    job = r.job_spec
    assert job["activeDeadlineSeconds"] == 1800
    assert job["ttlSecondsAfterFinished"] == 3600
    assert job["backoffLimit"] == 4
    assert r.env_value("SCORER_MODEL_NAME") == "Churn Model/EU"
    assert r.env_value("SCORER_MODEL_VERSION") == "12"
    assert r.env_value("SCORER_REQUIRE_ALIAS") == "champion"
    assert "SCORER_REQUIRE_STAGE" not in r.env
    assert r.env_value("SCORER_THRESHOLD") == "0.35"
    assert r.env_value("SCORER_CHUNK_ROWS") == "1000000"  # not 1e+06
    assert r.env_value("SCORER_MAX_REJECTED_RATIO") == "0.01"
    assert r.env_value("SCORER_TARGET_SCHEMA") == "scoring_eu"
    assert r.env_value("SCORER_LOG_FORMAT") == "console"
    assert r.env_value("SCORER_LOG_LEVEL") == "DEBUG"
    # "Churn Model/EU" made a valid label value.
    assert r.cronjob["metadata"]["labels"]["scorer.dev/model"] == "Churn-Model-EU"
    assert r.pod["metadata"]["labels"]["scorer.dev/model"] == "Churn-Model-EU"


def test_digest_scenario(renders: dict[str, Rendered]) -> None:
    r = renders["ci-digest"]
    digest = "sha256:" + "0123456789abcdef" * 4
    # The digest wins over the tag that is also set.
    assert r.container["image"] == f"registry.example.com/ml/scorer@{digest}"
    assert r.env_value("SCORER_IMAGE") == r.container["image"]
    assert r.container["imagePullPolicy"] == "Always"
    pod_spec = r.pod["spec"]
    assert pod_spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod_spec["priorityClassName"] == "batch-low"
    assert pod_spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod_spec["tolerations"][0]["key"] == "dedicated"
    assert "nodeAffinity" in pod_spec["affinity"]
    # The user's env comes after the chart's, so it overrides.
    names = [entry["name"] for entry in r.container["env"]]
    assert names[-2:] == ["HTTPS_PROXY", "SCORER_LOG_LEVEL"]
    assert r.env_value("SCORER_LOG_LEVEL") == "WARNING"
    assert r.container["envFrom"] == [{"configMapRef": {"name": "scorer-extra"}}]
    # Three separate annotation maps, each on its own object.
    assert r.cronjob["metadata"]["annotations"] == {"example.com/owner": "ml-platform"}
    assert r.cronjob["spec"]["jobTemplate"]["metadata"]["annotations"] == {
        "example.com/job": "true"
    }
    assert r.pod["metadata"]["annotations"] == {"example.com/pod": "true"}
    assert r.pod["metadata"]["labels"]["team"] == "ml"
    assert "team" not in r.cronjob["metadata"]["labels"]


def test_existing_service_account_scenario(renders: dict[str, Rendered]) -> None:
    r = renders["ci-existing-serviceaccount"]
    assert r.all("ServiceAccount") == []
    assert r.pod["spec"]["serviceAccountName"] == "ml-batch"
    assert r.pod["spec"]["automountServiceAccountToken"] is False
    assert r.cronjob["spec"]["suspend"] is True
    assert r.job_spec["podFailurePolicy"]["rules"] == [
        {
            "action": "FailJob",
            "onExitCodes": {"containerName": "scorer", "operator": "In", "values": [2, 3]},
        }
    ]


def test_dev_secret_scenario(renders: dict[str, Rendered]) -> None:
    r = renders["ci-dev-secret"]
    secret = r.one("Secret")
    assert secret["metadata"]["name"] == "scorer-dev-database"
    assert secret["stringData"] == {
        "database-url": "postgresql://scorer:dev-only@postgres.scorer-dev.svc:5432/scorer"
    }
    assert secret_ref(r.env["SCORER_DATABASE_URL"]) == {
        "name": "scorer-dev-database",
        "key": "database-url",
    }
    assert r.cronjob["metadata"]["name"] == "scorer-dev"
    assert r.pod["spec"]["volumes"] == [
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}}
    ]


def test_snapshots_scenario(renders: dict[str, Rendered]) -> None:
    """One row per entity per snapshot: the newest snapshot is scored (no SCORER_SNAPSHOT)."""
    r = renders["ci-snapshots"]
    assert r.env_value("SCORER_SNAPSHOT_COLUMN") == "snapshot_date"
    assert "SCORER_SNAPSHOT" not in r.env
    assert r.env_value("SCORER_POSITIVE_CLASS") == "churned"
    assert r.env_value("SCORER_SCORE_KIND") == "probability"
    assert r.env_value("SCORER_FEATURES_TABLE") == "features.customer_snapshots"


def test_pinned_snapshot_and_raw_scores(helm: Helm) -> None:
    """A raw score (a regressor) may take any threshold; a snapshot may be pinned."""
    r = helm.template(
        values=merged(
            BASE_VALUES,
            {
                "model": {"scoreKind": "raw"},
                "features": {"snapshotColumn": "week", "snapshot": 202640},
                "scoring": {"threshold": 250},
            },
        )
    )
    assert r.env_value("SCORER_SCORE_KIND") == "raw"
    assert r.env_value("SCORER_THRESHOLD") == "250"
    assert r.env_value("SCORER_SNAPSHOT_COLUMN") == "week"
    assert r.env_value("SCORER_SNAPSHOT") == "202640"  # not 202640.0 or 2.0264e+05
    from_set = helm.template(
        values=BASE_VALUES, sets=["model.scoreKind=raw", "scoring.threshold=-1.5"]
    )
    assert from_set.env_value("SCORER_THRESHOLD") == "-1.5"


def test_reasons_and_their_method_reach_the_scorer(helm: Helm) -> None:
    r = helm.template(
        values=merged(BASE_VALUES, {"scoring": {"reasons": 3, "reasonsMethod": "shapley"}})
    )
    assert r.env_value("SCORER_REASONS") == "3"
    assert r.env_value("SCORER_REASONS_METHOD") == "shapley"


# --- the backfill Job ------------------------------------------------------------------------

BACKFILL = {
    "features": {"snapshotColumn": "snapshot_date"},
    "backfill": {"enabled": True, "from": "2026-10-01", "to": "2026-10-31"},
}


def test_backfill_runs_the_cronjobs_pod_with_its_arguments(renders: dict[str, Rendered]) -> None:
    """Same env, security contexts, volumes, podFailurePolicy: only args and the deadline differ."""
    r = renders["ci-backfill"]
    job = r.backfill
    assert job["apiVersion"] == "batch/v1"
    assert job["metadata"]["namespace"] == "ml"
    assert job["metadata"]["labels"] == r.cronjob["metadata"]["labels"]
    backfill, scheduled = copy.deepcopy(job["spec"]), copy.deepcopy(r.job_spec)
    (container,) = backfill["template"]["spec"]["containers"]
    assert container.pop("args") == ["backfill", "--from", "2026-10-01", "--to", "2026-10-31"]
    assert "args" not in scheduled["template"]["spec"]["containers"][0]
    assert backfill.pop("activeDeadlineSeconds") == 86400
    assert scheduled.pop("activeDeadlineSeconds") == 3600
    assert backfill == scheduled
    assert backfill["podFailurePolicy"]["rules"][0]["action"] == "FailJob"


def test_backfill_job_name_is_per_range(helm: Helm) -> None:
    """A Job's pod template is immutable: another range is another Job, not a failed upgrade."""
    october = helm.template(values=merged(BASE_VALUES, BACKFILL), release="nightly")
    name = october.backfill["metadata"]["name"]
    assert re.fullmatch(r"nightly-scorer-backfill-[0-9a-f]{8}", name), name
    again = helm.template(values=merged(BASE_VALUES, BACKFILL), release="nightly")
    assert again.backfill["metadata"]["name"] == name
    november = helm.template(
        values=merged(BASE_VALUES, BACKFILL),
        release="nightly",
        sets=["backfill.from=2026-11-01", "backfill.to=2026-11-30"],
    )
    assert november.backfill["metadata"]["name"] != name
    # The name fits the 63-character batch.kubernetes.io/job-name label.
    long = helm.template(values=merged(BASE_VALUES, BACKFILL | {"fullnameOverride": "x" * 52}))
    long_name = long.backfill["metadata"]["name"]
    assert len(long_name) <= 63
    assert long_name.startswith("x" * 44 + "-backfill-")


def test_backfill_snapshots_and_integer_snapshots(helm: Helm) -> None:
    listed = helm.template(
        values=merged(
            BASE_VALUES,
            {
                "features": {"snapshotColumn": "week"},
                "backfill": {"enabled": True, "snapshots": [202640, 202641, "202642"]},
            },
        )
    )
    (container,) = listed.backfill["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["backfill", "--snapshots", "202640,202641,202642"]
    assert "activeDeadlineSeconds" not in listed.backfill["spec"]  # null: unset
    from_set = helm.template(
        values=merged(BASE_VALUES, {"features": {"snapshotColumn": "week"}}),
        sets=["backfill.enabled=true", "backfill.from=202601", "backfill.to=202652"],
    )
    (container,) = from_set.backfill["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["backfill", "--from", "202601", "--to", "202652"]


def test_no_backfill_unless_asked(renders: dict[str, Rendered]) -> None:
    for name, r in renders.items():
        backfills = [job for job in r.all("Job") if job is not r.migrate_job]
        assert (backfills != []) == (name == "ci-backfill"), name


def test_no_secret_unless_asked(renders: dict[str, Rendered]) -> None:
    for name, r in renders.items():
        if name != "ci-dev-secret":
            assert r.all("Secret") == [], name


# --- environments ----------------------------------------------------------------------------


def test_environments_select_models_as_designed(renders: dict[str, Rendered]) -> None:
    dev, staging, prod = (renders[f"env-{env}"] for env in ("dev", "staging", "prod"))
    assert dev.env_value("SCORER_MODEL_ALIAS") == "candidate"
    assert staging.env_value("SCORER_MODEL_ALIAS") == "champion"
    assert prod.env_value("SCORER_MODEL_VERSION") == "7"
    assert dev.cronjob["spec"]["schedule"] == "*/30 * * * *"
    assert dev.job_spec["activeDeadlineSeconds"] == 1500
    assert prod.cronjob["spec"]["timeZone"] == "Etc/UTC"
    assert prod.container["image"].startswith("registry.example.com/ml/scorer@sha256:")
    assert dev.container["imagePullPolicy"] == "IfNotPresent"
    for r in (dev, staging, prod):
        assert r.env_value("SCORER_MODEL_NAME") == "churn"
        assert r.all("Secret") == []


def test_promotion_is_one_line(helm: Helm, renders: dict[str, Rendered], tmp_path: Path) -> None:
    """Bumping prod's model.version changes one line of values and one env var of the CronJob
    (and of the `helm test` pod)."""
    text = ENV_VALUES["prod"].read_text()
    assert text.count('version: "7"') == 1
    bumped = tmp_path / "prod.yaml"
    bumped.write_text(text.replace('version: "7"', 'version: "8"'))
    before_lines, after_lines = text.splitlines(), bumped.read_text().splitlines()
    assert sum(a != b for a, b in zip(before_lines, after_lines, strict=True)) == 1

    before, after = renders["env-prod"], helm.template(bumped)
    assert after.env_value("SCORER_MODEL_VERSION") == "8"
    after.env["SCORER_MODEL_VERSION"]["value"] = "7"
    (check,) = after.all("Pod")  # `helm test` checks the same version
    (version,) = [e for e in check["spec"]["containers"][0]["env"] if e["name"].endswith("VERSION")]
    assert version == {"name": "SCORER_MODEL_VERSION", "value": "8"}
    version["value"] = "7"
    assert after.docs == before.docs


# --- helpers: names, image, label, numbers ---------------------------------------------------


def test_fullname_override_and_length_limit(helm: Helm) -> None:
    r = helm.template(values=merged(BASE_VALUES, {"fullnameOverride": "churn-nightly"}))
    assert r.cronjob["metadata"]["name"] == "churn-nightly"
    assert r.env_value("SCORER_K8S_CRONJOB") == "churn-nightly"
    long_release = "a" * 50
    with pytest.raises(HelmError, match="longer than 52 characters"):
        helm.template(values=BASE_VALUES, release=long_release)


def test_image_tag_override(helm: Helm) -> None:
    r = helm.template(
        values=BASE_VALUES, sets=["image.repository=ghcr.io/acme/scorer", "image.tag=1.2.3"]
    )
    assert r.container["image"] == "ghcr.io/acme/scorer:1.2.3"
    assert r.env_value("SCORER_IMAGE") == "ghcr.io/acme/scorer:1.2.3"


@pytest.mark.parametrize(
    ("model_name", "label"),
    [
        ("churn", "churn"),
        ("Churn Model/EU", "Churn-Model-EU"),
        ("-team.churn_v2!", "team.churn_v2"),
        ("x" * 80, "x" * 63),
    ],
)
def test_model_label_is_a_valid_label_value(helm: Helm, model_name: str, label: str) -> None:
    r = helm.template(values=merged(BASE_VALUES, {"model": {"name": model_name}}))
    assert r.cronjob["metadata"]["labels"]["scorer.dev/model"] == label
    assert r.env_value("SCORER_MODEL_NAME") == model_name


def test_numbers_from_set_and_from_files(helm: Helm) -> None:
    """`--set` passes strings for floats and ints for integers; a file passes YAML numbers."""
    from_set = helm.template(
        values=merged(BASE_VALUES, {"model": {"alias": ""}}),
        sets=["model.version=3", "scoring.threshold=0.7", "scoring.chunkRows=250000"],
    )
    assert from_set.env_value("SCORER_MODEL_VERSION") == "3"
    assert from_set.env_value("SCORER_THRESHOLD") == "0.7"
    assert from_set.env_value("SCORER_CHUNK_ROWS") == "250000"
    from_file = helm.template(
        values=merged(
            BASE_VALUES,
            {"model": {"alias": "", "version": 3}, "scoring": {"maxRejectedRatio": 0}},
        )
    )
    assert from_file.env_value("SCORER_MODEL_VERSION") == "3"
    assert from_file.env_value("SCORER_MAX_REJECTED_RATIO") == "0"  # 0 is a value, not "unset"


def test_args_and_no_pod_failure_policy(helm: Helm) -> None:
    r = helm.template(
        values=merged(BASE_VALUES, {"args": ["run"], "podFailurePolicy": {"enabled": False}})
    )
    assert r.container["args"] == ["run"]
    assert "podFailurePolicy" not in r.job_spec
    assert r.pod["spec"]["restartPolicy"] == "Never"


def test_quality_gate_values_reach_the_scorer(helm: Helm) -> None:
    r = helm.template(
        values=merged(
            BASE_VALUES,
            {
                "quality": {
                    "maxScorePsi": 0.3,
                    "minRowsRatio": 0.9,
                    "maxNullShareIncrease": 0.1,
                    "maxFeaturePsi": 0.15,
                    "override": "v8 promoted (CHURN-42)",
                }
            },
        )
    )
    assert r.env_value("SCORER_MAX_SCORE_PSI") == "0.3"
    assert r.env_value("SCORER_MIN_ROWS_RATIO") == "0.9"
    assert r.env_value("SCORER_MAX_NULL_SHARE_INCREASE") == "0.1"
    assert r.env_value("SCORER_MAX_FEATURE_PSI") == "0.15"
    assert r.env_value("SCORER_QUALITY_OVERRIDE") == "v8 promoted (CHURN-42)"


# --- retention -----------------------------------------------------------------------------


def test_retention_renders_a_prune_cronjob_with_the_scoring_pod(helm: Helm) -> None:
    off = helm.template(values=BASE_VALUES, release="nightly")
    assert off.prune_cronjob is None
    r = helm.template(
        values=merged(BASE_VALUES, {"retention": {"keepRuns": 7, "keepDays": 14}}),
        release="nightly",
    )
    prune = r.prune_cronjob
    assert prune is not None
    assert prune["metadata"]["name"] == "nightly-scorer-prune"
    assert prune["spec"]["schedule"] == "30 5 * * *"
    assert prune["spec"]["concurrencyPolicy"] == "Forbid"
    spec = copy.deepcopy(prune["spec"]["jobTemplate"]["spec"])
    (container,) = spec["template"]["spec"]["containers"]
    assert container.pop("args") == ["prune"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert (env["SCORER_KEEP_RUNS"], env["SCORER_KEEP_DAYS"]) == ("7", "14")
    scheduled = copy.deepcopy(r.job_spec)
    for job in (spec, scheduled):
        job["template"]["metadata"]["labels"].pop("app.kubernetes.io/component", None)
    assert spec == scheduled  # the scoring pod: same env, security, volumes, failure policy


def test_a_long_release_name_leaves_room_for_the_prune_cronjob(helm: Helm) -> None:
    with pytest.raises(HelmError, match="prune"):
        helm.template(
            values=merged(BASE_VALUES, {"retention": {"keepRuns": 3}, "fullnameOverride": "x" * 50})
        )
