"""values.schema.json rejects bad values before anything renders; the templates back it up."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
import yaml

from tests.chart.helm import BASE_VALUES, CHART, CI_VALUES, ENV_VALUES, Helm, HelmError, merged

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())

# (values merged over BASE_VALUES, a fragment of helm's error)
BAD_VALUES: dict[str, tuple[dict[str, Any], str]] = {
    "typo-top-level": ({"shedule": "0 3 * * *"}, "additional properties 'shedule' not allowed"),
    "typo-model": ({"model": {"aliass": "champion"}}, "additional properties 'aliass' not allowed"),
    "typo-security-context": (
        {"securityContext": {"readOnlyRootFileSystem": True}},
        "additional properties 'readOnlyRootFileSystem' not allowed",
    ),
    "typo-image": ({"image": {"digests": "sha256:abc"}}, "additional properties 'digests'"),
    "typo-env-item": ({"env": [{"name": "A", "vaule": "b"}]}, "additional properties 'vaule'"),
    "no-selector": ({"model": {"alias": ""}}, "at '/model': 'oneOf' failed, none matched"),
    "two-selectors": (
        {"model": {"alias": "champion", "version": "3"}},
        "at '/model': 'oneOf' failed, subschemas 0, 2 matched",
    ),
    "three-selectors": (
        {"model": {"alias": "champion", "stage": "Production", "version": 3}},
        "at '/model': 'oneOf' failed, subschemas 0, 1",
    ),
    "two-gates": (
        {"model": {"requireAlias": "champion", "requireStage": "Production"}},
        "at '/model': 'not' failed",
    ),
    "no-model-name": ({"model": {"name": ""}}, "at '/model/name': minLength"),
    "reserved-alias": ({"model": {"alias": "latest"}}, "at '/model/alias': 'not' failed"),
    "reserved-version-alias": ({"model": {"alias": "v3"}}, "at '/model/alias': 'not' failed"),
    "unknown-stage": ({"model": {"alias": "", "stage": "prod"}}, "at '/model/stage'"),
    "version-zero": ({"model": {"alias": "", "version": 0}}, "at '/model/version'"),
    "schedule-number": ({"schedule": 5}, "at '/schedule': got number, want string"),
    "schedule-not-cron": ({"schedule": "daily"}, "at '/schedule'"),
    "negative-starting-deadline": (
        {"startingDeadlineSeconds": -1},
        "at '/startingDeadlineSeconds': minimum: got -1, want 0",
    ),
    "negative-active-deadline": (
        {"activeDeadlineSeconds": -60},
        "at '/activeDeadlineSeconds': minimum: got -60, want 1",
    ),
    "negative-history": ({"failedJobsHistoryLimit": -1}, "at '/failedJobsHistoryLimit'"),
    "negative-backoff": ({"backoffLimit": -1}, "at '/backoffLimit'"),
    "string-deadline": ({"activeDeadlineSeconds": "3600"}, "at '/activeDeadlineSeconds'"),
    "bad-concurrency": ({"concurrencyPolicy": "forbid"}, "at '/concurrencyPolicy'"),
    "dev-secret-without-url": (
        {"database": {"existingSecret": "", "createSecret": True}},
        "at '/database/url': minLength: got 0, want 1",
    ),
    "dev-secret-not-a-postgres-url": (
        {"database": {"createSecret": True, "url": "mysql://u:p@h/db"}},
        "at '/database/url'",
    ),
    "no-database-secret": (
        {"database": {"existingSecret": ""}},
        "at '/database/existingSecret': minLength",
    ),
    "no-tracking-uri": ({"mlflow": {"trackingUri": ""}}, "at '/mlflow/trackingUri'"),
    "bad-table": ({"features": {"table": "features.customers; drop"}}, "at '/features/table'"),
    "bad-entity-column": (
        {"features": {"entityColumn": "customer id"}},
        "at '/features/entityColumn'",
    ),
    "threshold-above-one": ({"scoring": {"threshold": 1.5}}, "at '/scoring/threshold'"),
    "threshold-zero": ({"scoring": {"threshold": 0}}, "at '/scoring/threshold'"),
    "chunk-rows-zero": ({"scoring": {"chunkRows": 0}}, "at '/scoring/chunkRows'"),
    "bad-log-format": ({"log": {"format": "text"}}, "at '/log/format'"),
    "bad-log-level": ({"log": {"level": "TRACE"}}, "at '/log/level'"),
    "bad-pull-policy": ({"image": {"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy'"),
    "bad-digest": ({"image": {"digest": "latest"}}, "at '/image/digest'"),
    "annotation-not-string": ({"podAnnotations": {"a": 1}}, "at '/podAnnotations/a'"),
    "long-fullname-override": ({"fullnameOverride": "x" * 53}, "at '/fullnameOverride'"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_helm_rejects(helm: Helm, case: str) -> None:
    override, fragment = BAD_VALUES[case]
    with pytest.raises(HelmError) as excinfo:
        helm.template(values=merged(BASE_VALUES, override))
    message = str(excinfo.value)
    assert "values don't meet the specifications of the schema" in message
    assert fragment in message


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"model": {"alias": ""}}, "set exactly one of model.alias, model.stage, model.version"),
        (
            {"model": {"alias": "champion", "stage": "Staging"}},
            "set exactly one of model.alias, model.stage, model.version",
        ),
        (
            {"database": {"existingSecret": "", "createSecret": True}},
            "database.url is required when database.createSecret is true",
        ),
        ({"database": {"existingSecret": ""}}, "database.existingSecret is required"),
        ({"features": {"entityColumn": ""}}, "features.entityColumn is required"),
    ],
)
def test_templates_check_without_the_schema(
    helm: Helm, override: dict[str, Any], message: str
) -> None:
    """`--skip-schema-validation` still cannot render a CronJob that cannot run."""
    with pytest.raises(HelmError, match=message):
        helm.template(values=merged(BASE_VALUES, override), extra=["--skip-schema-validation"])


def test_schema_is_valid_draft7_and_strict() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, f"{path} is not strict"
            for key, child in node.items():
                walk(child, f"{path}/{key}")
        elif isinstance(node, list):
            for i, child in enumerate(node):
                walk(child, f"{path}/{i}")

    walk(SCHEMA, "")
    assert set(SCHEMA["properties"]) - {"global"} == set(DEFAULTS)


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, id=f"env-{e}") for e, p in ENV_VALUES.items()]
    + [pytest.param(p, id=f"ci-{p.name}") for p in CI_VALUES],
)
def test_scenarios_validate_with_python_jsonschema(path: Any) -> None:
    """A second validator agrees with helm's (the regexes are portable, no lookarounds)."""
    values = merged(DEFAULTS, yaml.safe_load(path.read_text()))
    errors = [e.message for e in jsonschema.Draft7Validator(SCHEMA).iter_errors(values)]
    assert errors == []


def test_defaults_only_miss_the_required_values() -> None:
    errors = sorted(e.json_path for e in jsonschema.Draft7Validator(SCHEMA).iter_errors(DEFAULTS))
    assert errors == [
        "$.database.existingSecret",
        "$.features.entityColumn",
        "$.features.table",
        "$.mlflow.trackingUri",
        "$.model",
        "$.model.name",
    ]
