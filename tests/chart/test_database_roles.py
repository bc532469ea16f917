"""Each Job gets the database Secret of the role it needs (deploy/README.md, "Roles").

The scoring CronJob and the `helm test` pod use the release's Secret (the runtime role);
prune and backfill default to it, and may have Secrets of their own.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.helm import BASE_VALUES, Helm, HelmError, merged

JOBS = {
    "features": {"snapshotColumn": "snapshot_date"},
    "retention": {"keepRuns": 7},
    "backfill": {"enabled": True, "from": "2026-10-01", "to": "2026-10-31"},
}


def _database_url(pod_spec: dict[str, Any]) -> dict[str, Any]:
    """The secretKeyRef of the pod's SCORER_DATABASE_URL (exactly one entry)."""
    (container,) = pod_spec["containers"]
    (entry,) = [item for item in container["env"] if item["name"] == "SCORER_DATABASE_URL"]
    ref: dict[str, Any] = entry["valueFrom"]["secretKeyRef"]
    return ref


def _refs(helm: Helm, values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    r = helm.template(values=merged(merged(BASE_VALUES, JOBS), values))
    prune = r.prune_cronjob
    assert prune is not None
    return {
        "scoring": _database_url(r.pod["spec"]),
        "prune": _database_url(prune["spec"]["jobTemplate"]["spec"]["template"]["spec"]),
        "backfill": _database_url(r.backfill["spec"]["template"]["spec"]),
        "helm-test": _database_url(r.one("Pod")["spec"]),
    }


def test_every_job_uses_the_runtime_secret_by_default(helm: Helm) -> None:
    refs = _refs(helm, {})
    assert {job: (ref["name"], ref["key"]) for job, ref in refs.items()} == dict.fromkeys(
        refs, ("scorer-database", "url")
    )


def test_prune_and_backfill_take_secrets_of_their_own(helm: Helm) -> None:
    refs = _refs(
        helm,
        {
            "database": {"urlKey": "uri"},
            "retention": {"database": {"existingSecret": "scorer-prune", "urlKey": "dsn"}},
            "backfill": {"database": {"existingSecret": "scorer-backfill"}},
        },
    )
    assert (refs["prune"]["name"], refs["prune"]["key"]) == ("scorer-prune", "dsn")
    # Without a key of its own, a Job's Secret is read at the release's key.
    assert (refs["backfill"]["name"], refs["backfill"]["key"]) == ("scorer-backfill", "uri")
    for job in ("scoring", "helm-test"):  # the runtime role checks what the runtime role runs
        assert (refs[job]["name"], refs[job]["key"]) == ("scorer-database", "uri")


@pytest.mark.parametrize(
    "values",
    [
        {"retention": {"database": {"urlKey": "not a key"}}},
        {"backfill": {"database": {"existingSecret": "x" * 254}}},
        {"backfill": {"database": {"secret": "scorer-backfill"}}},
    ],
)
def test_the_schema_rejects_bad_job_secrets(helm: Helm, values: dict[str, Any]) -> None:
    with pytest.raises(HelmError):
        helm.template(values=merged(merged(BASE_VALUES, JOBS), values))
