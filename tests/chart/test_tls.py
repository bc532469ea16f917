"""`database.tls.caSecret`: the database's CA, read-only at one path, in every pod the chart
renders, with libpq told to verify the server against it; nothing of it by default."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.helm import BASE_VALUES, CHART, Helm, HelmError, Rendered, merged

CA_PATH = "/etc/scorer/tls/ca.crt"
TLS_VALUES = CHART / "ci" / "tls-values.yaml"


def pod_specs(rendered: Rendered) -> dict[str, dict[str, Any]]:
    """Every pod spec the chart rendered, by what runs it (CronJobs, Jobs, bare Pods)."""
    specs: dict[str, dict[str, Any]] = {}
    for doc in rendered.docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] == "CronJob":
            specs[name] = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif doc["kind"] == "Job":
            specs[name] = doc["spec"]["template"]["spec"]
        elif doc["kind"] == "Pod":
            specs[name] = doc["spec"]
    return specs


def ca_mounts(spec: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each container's mount of the CA volume, with the volume it mounts."""
    volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
    found = []
    for container in spec["containers"]:
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if "secret" in volume:
                found.append((mount, volume))
    return found


BACKFILL = {"backfill": {"enabled": True, "from": "2026-10-01", "to": "2026-10-02"}}


def test_every_pod_kind_mounts_the_ca_read_only_at_one_path(helm: Helm) -> None:
    specs = pod_specs(helm.template(TLS_VALUES, values=BACKFILL))
    # The scenario renders every pod kind: scoring, prune, backfill, the migration Job and the
    # `helm test` pod.
    kinds = sorted(name.rsplit("-", 1)[0] if "backfill-" in name else name for name in specs)
    assert kinds == [
        "CronJob/scorer",
        "CronJob/scorer-prune",
        "Job/scorer-backfill",
        "Job/scorer-migrate",
        "Pod/scorer-check",
    ]
    for name, spec in specs.items():
        ((mount, volume),) = ca_mounts(spec)
        assert mount["readOnly"] is True, name
        assert f"{mount['mountPath']}/{volume['secret']['items'][0]['path']}" == CA_PATH, name
        assert volume["secret"]["secretName"] == "warehouse-ca", name
        assert volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}], name
        assert volume["secret"]["defaultMode"] == 0o444, name  # readable by the non-root user
        (container,) = spec["containers"]
        env = {entry["name"]: entry.get("value") for entry in container["env"]}
        assert env["PGSSLROOTCERT"] == CA_PATH, name
        assert env["PGSSLMODE"] == "verify-full", name
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], name  # noqa: S108


def test_the_key_and_sslmode_are_configurable(helm: Helm) -> None:
    tls = {"caSecret": "rds-ca", "caKey": "global-bundle.pem", "sslmode": "verify-ca"}
    r = helm.template(values=merged(BASE_VALUES, {"database": {"tls": tls}}))
    ((_mount, volume),) = ca_mounts(r.pod["spec"])
    assert volume["secret"]["items"] == [{"key": "global-bundle.pem", "path": "ca.crt"}]
    assert r.env_value("PGSSLMODE") == "verify-ca"
    assert r.env_value("PGSSLROOTCERT") == CA_PATH


def test_off_by_default(helm: Helm) -> None:
    values = merged(BASE_VALUES, {"retention": {"keepRuns": 3}, **BACKFILL})
    values = merged(values, {"features": {"snapshotColumn": "snapshot_date"}})
    specs = pod_specs(helm.template(values=values))
    assert len(specs) == 5
    for name, spec in specs.items():
        assert ca_mounts(spec) == [], name
        assert [volume["name"] for volume in spec["volumes"]] == ["tmp"], name
        names = {entry["name"] for entry in spec["containers"][0]["env"]}
        assert not names & {"PGSSLROOTCERT", "PGSSLMODE"}, name


@pytest.mark.parametrize(
    ("tls", "fragment"),
    [
        ({"caSecret": "Not_A_Name"}, "at '/database/tls/caSecret'"),
        ({"caSecret": "db-ca", "caKey": ""}, "at '/database/tls/caKey'"),
        ({"caSecret": "db-ca", "sslmode": "require"}, "at '/database/tls/sslmode'"),
        ({"caSecrett": "db-ca"}, "additional properties 'caSecrett' not allowed"),
    ],
)
def test_bad_tls_values_are_refused(helm: Helm, tls: dict[str, str], fragment: str) -> None:
    with pytest.raises(HelmError, match=fragment):
        helm.template(values=merged(BASE_VALUES, {"database": {"tls": tls}}))
