"""The migration Job: a pre-install/pre-upgrade hook by default, a plain Job with a hashed name
for GitOps tools; the CronJob's pod either way; what the hook needs comes first."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.helm import BASE_VALUES, CHART, Helm, HelmError, Rendered, merged

HOOK = "pre-install,pre-upgrade"
DEV_SECRET = {"database": {"createSecret": True, "urlKey": "dsn", "url": "postgresql://u:p@db/x"}}


def annotations(doc: dict[str, Any]) -> dict[str, str]:
    return dict(doc["metadata"].get("annotations", {}))


def weight(doc: dict[str, Any]) -> int:
    return int(annotations(doc)["helm.sh/hook-weight"])


def pod_spec(job: dict[str, Any]) -> dict[str, Any]:
    return dict(job["spec"]["template"]["spec"])


def container(job: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod_spec(job)["containers"]
    return dict(only)


def database_ref(job: dict[str, Any]) -> dict[str, str]:
    (entry,) = [e for e in container(job)["env"] if e["name"] == "SCORER_DATABASE_URL"]
    return dict(entry["valueFrom"]["secretKeyRef"])


def render(helm: Helm, **override: Any) -> Rendered:
    return helm.template(values=merged(BASE_VALUES, override), release="nightly")


def test_by_default_a_hook_job_runs_migrate_in_the_cronjobs_pod(helm: Helm) -> None:
    r = render(helm)
    job = r.migrate_job
    assert job in r.hooks("Job")
    assert job["metadata"]["name"] == "nightly-scorer-migrate"
    assert annotations(job) == {
        "helm.sh/hook": HOOK,
        "helm.sh/hook-weight": "0",
        "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded",
    }
    assert container(job)["args"] == ["migrate"]
    # Only what `migrate` reads: the runtime Secret by default, nothing of the model's.
    names = [e["name"] for e in container(job)["env"]]
    assert names == ["SCORER_DATABASE_URL", "SCORER_LOG_FORMAT"]
    assert database_ref(job) == {"name": "scorer-database", "key": "url"}
    # The CronJob's pod: security contexts, resources, volumes, retries and podFailurePolicy.
    pod, cron_pod = pod_spec(job), r.pod["spec"]
    for key in ("securityContext", "automountServiceAccountToken", "restartPolicy", "volumes"):
        assert pod[key] == cron_pod[key], key
    for key in ("securityContext", "resources", "volumeMounts", "image"):
        assert container(job)[key] == r.container[key], key
    for key in ("backoffLimit", "podFailurePolicy"):
        assert job["spec"][key] == r.job_spec[key], key
    assert job["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [2]
    assert job["spec"]["activeDeadlineSeconds"] == 240
    # The NetworkPolicy selects every pod of the release by these labels.
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "migrate"
    assert {k: labels[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")} == {
        "app.kubernetes.io/name": "scorer",
        "app.kubernetes.io/instance": "nightly",
    }


def test_what_the_hook_needs_is_a_hook_of_a_lower_weight(helm: Helm) -> None:
    """A pre-install hook runs before any object of the release exists: the dev Secret, the
    ServiceAccount and the NetworkPolicy come as hooks of their own, created first."""
    r = render(helm, **DEV_SECRET, networkPolicy={"enabled": True})
    job = r.migrate_job
    (secret,) = r.hooks("Secret")
    (account,) = r.hooks("ServiceAccount")
    (policy,) = r.hooks("NetworkPolicy")
    for doc in (secret, account, policy):
        assert doc["metadata"]["name"] == "nightly-scorer-migrate"
        assert annotations(doc)["helm.sh/hook"] == HOOK
        assert annotations(doc)["helm.sh/hook-delete-policy"] == (
            "before-hook-creation,hook-succeeded"
        )
        assert weight(doc) < weight(job)
    assert database_ref(job) == {"name": "nightly-scorer-migrate", "key": "dsn"}
    assert secret["stringData"] == r.one("Secret")["stringData"] == {"dsn": "postgresql://u:p@db/x"}
    assert pod_spec(job)["serviceAccountName"] == "nightly-scorer-migrate"
    assert policy["spec"] == r.one("NetworkPolicy")["spec"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= job["spec"]["template"]["metadata"]["labels"].items()
    # The release's own objects stay as they were: the CronJob uses them.
    assert r.one("ServiceAccount")["metadata"]["name"] == "nightly-scorer"
    assert r.one("Secret")["metadata"]["name"] == "nightly-scorer-database"


def test_the_migration_role_has_a_secret_of_its_own(helm: Helm) -> None:
    own = {"migrate": {"database": {"existingSecret": "scorer-owner", "urlKey": "uri"}}}
    r = render(helm, **own, **DEV_SECRET)
    assert database_ref(r.migrate_job) == {"name": "scorer-owner", "key": "uri"}
    assert r.hooks("Secret") == []  # no copy of the dev Secret: the Job does not use it
    (runtime,) = [e for e in r.env.values() if e["name"] == "SCORER_DATABASE_URL"]
    assert runtime["valueFrom"]["secretKeyRef"]["name"] == "nightly-scorer-database"


def test_the_migration_job_grants_the_runtime_and_reader_roles_when_named(helm: Helm) -> None:
    grant = {"runtimeRole": "scorer_nightly", "readerRole": "churn_readers"}
    r = render(helm, migrate={"grant": grant})
    args = ["migrate", "--grant-runtime", "scorer_nightly", "--grant-reader", "churn_readers"]
    assert container(r.migrate_job)["args"] == args
    assert container(render(helm).migrate_job)["args"] == ["migrate"]
    with pytest.raises(HelmError, match="both runtimeRole and readerRole"):
        render(helm, migrate={"grant": {"runtimeRole": "scorer_nightly"}})


def test_an_existing_service_account_needs_no_hook(helm: Helm) -> None:
    r = render(helm, serviceAccount={"create": False, "name": "scorer-sa"})
    assert r.hooks("ServiceAccount") == []
    assert pod_spec(r.migrate_job)["serviceAccountName"] == "scorer-sa"


def plain(helm: Helm, **override: Any) -> dict[str, Any]:
    r = render(helm, **merged({"migrate": {"useHelmHooks": False}}, override))
    assert r.hooks("Job") == r.hooks("Secret") == r.hooks("ServiceAccount") == []
    return r.migrate_job


def test_without_hooks_a_plain_job_named_by_a_hash_of_what_it_runs(helm: Helm) -> None:
    job = plain(helm, migrate={"jobAnnotations": {"argocd.argoproj.io/sync-wave": "-1"}})
    name = job["metadata"]["name"]
    assert re.fullmatch(r"nightly-scorer-migrate-[0-9a-f]{8}", name), name
    assert annotations(job) == {"argocd.argoproj.io/sync-wave": "-1"}
    assert pod_spec(job)["serviceAccountName"] == "nightly-scorer"
    assert database_ref(job) == {"name": "scorer-database", "key": "url"}
    # Another image, Secret or setting is another Job (a Job's pod template is immutable) ...
    for change in (
        {"image": {"tag": "0.2.0"}},
        {"migrate": {"database": {"existingSecret": "owner"}}},
        {"scoring": {"targetSchema": "scoring_v2"}},
        {"resources": {"requests": {"cpu": "2"}}},
    ):
        assert plain(helm, **change)["metadata"]["name"] != name, change
    # ... and what the Job does not run keeps the finished one.
    for same in ({"schedule": "0 4 * * *"}, {"model": {"alias": "challenger"}}):
        assert plain(helm, **same)["metadata"]["name"] == name, same


def test_the_hash_covers_the_chart_version(helm: Helm, tmp_path: Path) -> None:
    copy = tmp_path / "scorer"
    shutil.copytree(CHART, copy)
    meta = yaml.safe_load((copy / "Chart.yaml").read_text())
    meta["version"] = "99.0.0"
    (copy / "Chart.yaml").write_text(yaml.safe_dump(meta))
    values = helm.values_file(merged(BASE_VALUES, {"migrate": {"useHelmHooks": False}}))
    names = []
    for chart in (CHART, copy):
        out = helm.run("template", "nightly", str(chart), "-f", str(values))
        names += re.findall(r"name: (nightly-scorer-migrate-[0-9a-f]{8})", out)
    assert len(names) == 2, names
    assert names[0] != names[1]


def test_a_long_name_keeps_the_job_name_label_within_63(helm: Helm) -> None:
    long = "x" * 52
    r = render(helm, fullnameOverride=long, migrate={"useHelmHooks": False})
    assert len(r.migrate_job["metadata"]["name"]) <= 63
    hook = render(helm, fullnameOverride=long).migrate_job
    assert len(hook["metadata"]["name"]) <= 63


def test_no_migration_when_disabled(helm: Helm) -> None:
    r = render(helm, **DEV_SECRET, migrate={"enabled": False}, networkPolicy={"enabled": True})
    assert [doc["kind"] for doc in r.docs if "helm.sh/hook" in annotations(doc)] == ["Pod"]
    assert [doc for doc in r.docs if doc["metadata"]["name"].endswith("-migrate")] == []


def test_the_freshness_limit_reaches_the_run_not_the_migration(helm: Helm) -> None:
    r = render(helm, features={"snapshotColumn": "snapshot_date", "maxSnapshotAge": "36h"})
    assert r.env_value("SCORER_MAX_SNAPSHOT_AGE") == "36h"
    assert "SCORER_MAX_SNAPSHOT_AGE" not in {e["name"] for e in container(r.migrate_job)["env"]}
    assert "SCORER_MAX_SNAPSHOT_AGE" not in render(helm).env
