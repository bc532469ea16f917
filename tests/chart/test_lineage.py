"""The chart's lineage values: the MLflow record and OpenLineage, wired to the scorer's
variables, the OpenLineage URL or API key from a Secret, bad values refused by the schema."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.helm import BASE_VALUES, CHART, Helm, HelmError, merged


def secret_ref(entry: dict[str, Any]) -> dict[str, Any]:
    assert "value" not in entry
    return dict(entry["valueFrom"]["secretKeyRef"])


def test_by_default_runs_are_recorded_and_no_events_are_sent(helm: Helm) -> None:
    rendered = helm.template(values=BASE_VALUES)
    assert rendered.env_value("SCORER_MLFLOW_RECORD") == "true"
    assert "SCORER_MLFLOW_EXPERIMENT" not in rendered.env  # the scorer's scoring/<model name>
    assert not [name for name in rendered.env if name.startswith("OPENLINEAGE")]


def test_recording_off_and_a_named_experiment(helm: Helm) -> None:
    values = merged(BASE_VALUES, {"mlflow": {"recordRuns": False, "experiment": "/Shared/churn"}})
    rendered = helm.template(values=values)
    assert rendered.env_value("SCORER_MLFLOW_RECORD") == "false"
    assert rendered.env_value("SCORER_MLFLOW_EXPERIMENT") == "/Shared/churn"


def test_openlineage_from_values_with_the_api_key_from_a_secret(helm: Helm) -> None:
    rendered = helm.template(CHART / "ci" / "lineage-values.yaml")
    env = rendered.env
    assert rendered.env_value("OPENLINEAGE_URL") == "http://marquez.lineage.svc:5000"
    assert rendered.env_value("OPENLINEAGE_NAMESPACE") == "ml-scoring"
    assert "OPENLINEAGE_ENDPOINT" not in env  # the client's api/v1/lineage
    assert secret_ref(env["OPENLINEAGE_API_KEY"]) == {
        "name": "scorer-openlineage",
        "key": "api-key",
        "optional": True,
    }
    assert rendered.env_value("SCORER_MLFLOW_EXPERIMENT") == "scoring/churn-nightly"


def test_the_url_itself_from_a_secret(helm: Helm) -> None:
    values = merged(
        BASE_VALUES,
        {
            "openlineage": {
                "existingSecret": "lineage",
                "urlKey": "url",
                "apiKeyKey": "",
                "endpoint": "api/v2/lineage",
            }
        },
    )
    env = helm.template(values=values).env
    assert secret_ref(env["OPENLINEAGE_URL"]) == {"name": "lineage", "key": "url"}
    assert "OPENLINEAGE_API_KEY" not in env
    assert env["OPENLINEAGE_ENDPOINT"]["value"] == "api/v2/lineage"


def test_the_api_key_is_never_a_plain_value(helm: Helm) -> None:
    with pytest.raises(HelmError, match="additional properties 'apiKey' not allowed"):
        helm.template(values=merged(BASE_VALUES, {"openlineage": {"apiKey": "k"}}))


BAD_VALUES: dict[str, tuple[dict[str, Any], str]] = {
    "url-without-scheme": ({"openlineage": {"url": "marquez:5000"}}, "at '/openlineage/url'"),
    "url-not-http": ({"openlineage": {"url": "kafka://broker:9092"}}, "at '/openlineage/url'"),
    "url-and-url-key": (
        {"openlineage": {"url": "http://m:5000", "urlKey": "url", "existingSecret": "s"}},
        "at '/openlineage': 'not' failed",
    ),
    "url-key-without-secret": (
        {"openlineage": {"urlKey": "url"}},
        "at '/openlineage/existingSecret': minLength",
    ),
    "blank-namespace": ({"openlineage": {"namespace": " "}}, "at '/openlineage/namespace'"),
    "experiment-control-character": (
        {"mlflow": {"experiment": "scoring/\u0001churn"}},
        "at '/mlflow/experiment'",
    ),
    "experiment-blank": ({"mlflow": {"experiment": "  "}}, "at '/mlflow/experiment'"),
    "experiment-too-long": ({"mlflow": {"experiment": "x" * 501}}, "at '/mlflow/experiment'"),
    "record-not-a-boolean": ({"mlflow": {"recordRuns": "yes"}}, "at '/mlflow/recordRuns'"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_helm_rejects(helm: Helm, case: str) -> None:
    override, fragment = BAD_VALUES[case]
    with pytest.raises(HelmError) as excinfo:
        helm.template(values=merged(BASE_VALUES, override))
    message = str(excinfo.value)
    assert "values don't meet the specifications of the schema" in message
    assert fragment in message
