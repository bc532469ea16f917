"""values.schema.json, generated from values.yaml, rejects bad values before anything renders."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.support.helm import (
    BASE_VALUES,
    CHART,
    CI_VALUES,
    ENV_VALUES,
    Helm,
    HelmError,
    merged,
    require_tool,
)

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())
VALIDATOR = jsonschema.validators.validator_for(SCHEMA)

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
    "threshold-above-one-as-string": (
        {"scoring": {"threshold": "1.5"}},
        "at '/scoring/threshold'",
    ),
    "threshold-not-a-number": (
        {"model": {"scoreKind": "raw"}, "scoring": {"threshold": "high"}},
        "at '/scoring/threshold'",
    ),
    "unknown-score-kind": ({"model": {"scoreKind": "label"}}, "at '/model/scoreKind'"),
    "bad-snapshot-column": (
        {"features": {"snapshotColumn": "snapshot date"}},
        "at '/features/snapshotColumn'",
    ),
    "backfill-without-snapshot-column": (
        {"backfill": {"enabled": True, "from": "2026-10-01", "to": "2026-10-31"}},
        "at '/features/snapshotColumn': minLength: got 0, want 1",
    ),
    "backfill-without-range": (
        {"features": {"snapshotColumn": "snapshot_date"}, "backfill": {"enabled": True}},
        "at '/backfill': 'oneOf' failed, none matched",
    ),
    "backfill-half-range": (
        {
            "features": {"snapshotColumn": "snapshot_date"},
            "backfill": {"enabled": True, "from": "2026-10-01"},
        },
        "at '/backfill/to': 'not' failed",
    ),
    "backfill-range-and-snapshots": (
        {
            "features": {"snapshotColumn": "snapshot_date"},
            "backfill": {"enabled": True, "from": "a", "to": "b", "snapshots": ["c"]},
        },
        "at '/backfill/snapshots': maxItems: got 1, want 0",
    ),
    "typo-backfill": ({"backfill": {"form": "2026-10-01"}}, "additional properties 'form'"),
    "chunk-rows-zero": ({"scoring": {"chunkRows": 0}}, "at '/scoring/chunkRows'"),
    "negative-psi-limit": ({"quality": {"maxScorePsi": -0.1}}, "at '/quality/maxScorePsi'"),
    "rows-ratio-above-one": ({"quality": {"minRowsRatio": 1.5}}, "at '/quality/minRowsRatio'"),
    "null-increase-above-one": (
        {"quality": {"maxNullShareIncrease": 2}},
        "at '/quality/maxNullShareIncrease'",
    ),
    "typo-quality": ({"quality": {"psi": 1}}, "additional properties 'psi'"),
    "bad-log-format": ({"log": {"format": "text"}}, "at '/log/format'"),
    "bad-log-level": ({"log": {"level": "TRACE"}}, "at '/log/level'"),
    "bad-pull-policy": ({"image": {"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy'"),
    "bad-digest": ({"image": {"digest": "latest"}}, "at '/image/digest'"),
    "annotation-not-string": ({"podAnnotations": {"a": 1}}, "at '/podAnnotations/a'"),
    "long-fullname-override": ({"fullnameOverride": "x" * 53}, "at '/fullnameOverride'"),
    "typo-migrate": ({"migrate": {"useHelmHook": False}}, "additional properties 'useHelmHook'"),
    "migrate-hooks-not-boolean": (
        {"migrate": {"useHelmHooks": "no"}},
        "at '/migrate/useHelmHooks': got string, want boolean",
    ),
    "migrate-url-key-empty": (
        {"migrate": {"database": {"urlKey": ""}}},
        "at '/migrate/database/urlKey'",
    ),
    "reasons-method-unknown": (
        {"scoring": {"reasonsMethod": "exact"}},
        "at '/scoring/reasonsMethod'",
    ),
    "snapshot-age-in-words": (
        {"features": {"maxSnapshotAge": "36 hours"}},
        "at '/features/maxSnapshotAge'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_helm_rejects(helm: Helm, case: str) -> None:
    override, fragment = BAD_VALUES[case]
    with pytest.raises(HelmError) as excinfo:
        helm.template(values=merged(BASE_VALUES, override))
    message = str(excinfo.value)
    assert "values don't meet the specifications of the schema" in message
    assert fragment in message


def test_schema_is_what_helm_schema_generates(tmp_path: Path) -> None:
    """values.schema.json is generated (values.yaml annotations, schema/*.yaml): never edited."""
    out = tmp_path / "values.schema.json"
    proc = subprocess.run(
        [str(require_tool("helm-schema")), "--output", str(out)],
        cwd=CHART,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == (CHART / "values.schema.json").read_text(), (
        "values.schema.json is stale: run `cd charts/scorer && ~/.cache/scorer/bin/helm-schema`"
    )


def test_templates_only_check_what_the_schema_cannot() -> None:
    """The rules live in the schema once; the templates keep what depends on the release."""
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    validate = helpers.split('{{- define "scorer.validate" -}}', 1)[1].split("{{- end }}\n\n", 1)[0]
    assert validate.count("fail ") == 2
    assert "longer than 52 characters" in validate
    assert "must not exceed shards" in validate  # one value against another: no JSON Schema
    for template in (CHART / "templates").rglob("*.*"):
        assert "required " not in template.read_text(), template.name


@pytest.mark.parametrize(
    "override",
    [
        {"model": {"alias": "", "version": "3", "stage": "Staging"}},
        {"database": {"existingSecret": "", "createSecret": True}},
        {"features": {"entityColumn": ""}},
    ],
)
def test_skipping_the_schema_leaves_the_checks_to_the_scorer(
    helm: Helm, override: dict[str, Any]
) -> None:
    """`--skip-schema-validation` renders what it is given: the scorer's own settings check then
    fails the run with exit code 2 (podFailurePolicy FailJob), naming the variable."""
    values = merged(BASE_VALUES, override)
    rendered = helm.template(values=values, extra=["--skip-schema-validation"])
    assert rendered.cronjob["metadata"]["name"] == "scorer"


def test_release_name_too_long_without_the_schema(helm: Helm) -> None:
    with pytest.raises(HelmError, match="longer than 52 characters"):
        helm.template(values=BASE_VALUES, release="a" * 50, extra=["--skip-schema-validation"])


def test_schema_is_valid_and_strict() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    VALIDATOR.check_schema(SCHEMA)

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if "properties" in node and node.get("type") == "object":
                assert node.get("additionalProperties") is False, f"{path} is not strict"
            if node.get("additionalProperties") is True:
                opaque = "passed as it is" in node.get("description", "")
                assert "$ref" in node or opaque, f"{path} allows any key, and no $ref is stricter"
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
    errors = [e.message for e in VALIDATOR(SCHEMA).iter_errors(values)]
    assert errors == []


def test_defaults_only_miss_the_required_values() -> None:
    errors = sorted(e.json_path for e in VALIDATOR(SCHEMA).iter_errors(DEFAULTS))
    assert errors == [
        "$.database.existingSecret",
        "$.features.entityColumn",
        "$.features.table",
        "$.mlflow.trackingUri",
        "$.model",
        "$.model.name",
    ]
