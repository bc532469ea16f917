"""`model.shadow.*`: a challenger scored in the champion's shadow, rendered as its settings."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.helm import BASE_VALUES, Helm, HelmError, merged

SHADOW_VARIABLES = ("SCORER_SHADOW_ALIAS", "SCORER_SHADOW_VERSION")


def test_no_challenger_sets_no_shadow_variable(helm: Helm) -> None:
    r = helm.template(values=BASE_VALUES)
    assert not set(SHADOW_VARIABLES) & set(r.env)


@pytest.mark.parametrize(
    ("shadow", "variable", "value"),
    [
        ({"alias": "challenger"}, "SCORER_SHADOW_ALIAS", "challenger"),
        ({"version": "8"}, "SCORER_SHADOW_VERSION", "8"),
        ({"version": 8}, "SCORER_SHADOW_VERSION", "8"),
    ],
    ids=["alias", "version-string", "version-integer"],
)
def test_the_challenger_renders_its_variable_on_the_run_and_the_backfill(
    helm: Helm, shadow: dict[str, Any], variable: str, value: str
) -> None:
    r = helm.template(
        values=merged(
            BASE_VALUES,
            {
                "model": {"shadow": shadow},
                "features": {"snapshotColumn": "snapshot_date"},
                "backfill": {"enabled": True, "snapshots": ["2026-10-01"]},
            },
        )
    )
    assert r.env_value(variable) == value
    (other,) = set(SHADOW_VARIABLES) - {variable}
    assert other not in r.env
    (container,) = r.backfill["spec"]["template"]["spec"]["containers"]
    assert {entry["name"]: entry.get("value") for entry in container["env"]}[variable] == value


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"model": {"shadow": {"alias": "challenger", "version": "8"}}}, "/model/shadow"),
        ({"model": {"shadow": {"alias": "latest"}}}, "/model/shadow/alias"),
        ({"model": {"shadow": {"alias": "chall enger"}}}, "/model/shadow/alias"),
        ({"model": {"shadow": {"version": 0}}}, "/model/shadow/version"),
        ({"model": {"shadow": {"shadow": "x"}}}, "additional properties 'shadow' not allowed"),
        ({"model": {"shadow": {"alias": "challenger"}}, "shards": 4}, "/shards"),
        ({"model": {"shadow": {"version": 8}}, "shards": 2}, "/shards"),
    ],
    ids=[
        "alias-and-version",
        "reserved-alias",
        "bad-alias",
        "version-zero",
        "typo",
        "sharded-alias",
        "sharded-version",
    ],
)
def test_bad_shadow_values_are_refused(helm: Helm, values: dict[str, Any], error: str) -> None:
    with pytest.raises(HelmError, match=error):
        helm.template(values=merged(BASE_VALUES, values))


def test_a_sharded_release_without_a_challenger_still_renders(helm: Helm) -> None:
    r = helm.template(values=merged(BASE_VALUES, {"shards": 4, "model": {"shadow": {"alias": ""}}}))
    assert r.env_value("SCORER_SHARDS") == "4"
