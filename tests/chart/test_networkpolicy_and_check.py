"""The opt-in NetworkPolicy, the `helm test` pod, and the digest pins of staging and prod."""

from __future__ import annotations

import pytest

from tests.support.helm import BASE_VALUES, ENV_VALUES, Helm, HelmError, merged


def test_no_network_policy_by_default(helm: Helm) -> None:
    assert "NetworkPolicy" not in helm.template(values=BASE_VALUES).kinds()


def test_network_policy_allows_egress_to_the_database_mlflow_and_dns_only(helm: Helm) -> None:
    r = helm.template(
        values=merged(
            BASE_VALUES,
            {
                "networkPolicy": {
                    "enabled": True,
                    "database": {"to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}]},
                    "extraEgress": [{"ports": [{"port": 443, "protocol": "TCP"}]}],
                }
            },
        )
    )
    policy = r.one("NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in policy  # nothing may connect in
    # It selects every pod of the release: the scoring pods and the helm test pod.
    selector = policy["podSelector"]["matchLabels"]
    for pod_labels in (r.pod["metadata"]["labels"], r.one("Pod")["metadata"]["labels"]):
        assert selector.items() <= pod_labels.items()
    database, mlflow, dns, extra = policy["egress"]
    assert database == {
        "ports": [{"port": 5432, "protocol": "TCP"}],
        "to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}],
    }
    assert mlflow == {"ports": [{"port": 5000, "protocol": "TCP"}]}  # no peers: any address
    assert dns["ports"] == [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert extra == {"ports": [{"port": 443, "protocol": "TCP"}]}


def test_prod_turns_the_network_policy_on(helm: Helm) -> None:
    policy = helm.template(ENV_VALUES["prod"]).one("NetworkPolicy")["spec"]
    assert [rule.get("to", [{}])[0].get("namespaceSelector") for rule in policy["egress"]] == [
        {"matchLabels": {"kubernetes.io/metadata.name": "databases"}},
        {"matchLabels": {"kubernetes.io/metadata.name": "mlflow"}},
        {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    ]


def test_a_misspelt_peer_is_refused(helm: Helm) -> None:
    bad = {"networkPolicy": {"enabled": True, "database": {"to": [{"ipblock": {}}]}}}
    with pytest.raises(HelmError, match="additional properties 'ipblock' not allowed"):
        helm.template(values=merged(BASE_VALUES, bad))


def test_helm_test_runs_scorer_check_as_the_release_does(helm: Helm) -> None:
    r = helm.template(values=BASE_VALUES, release="nightly")
    check = r.one("Pod")
    assert check["metadata"]["name"] == "nightly-scorer-check"
    assert check["metadata"]["annotations"]["helm.sh/hook"] == "test"
    # Kept after a success, so `helm test --logs` can show what it checked.
    assert check["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "before-hook-creation"
    spec = check["spec"]
    assert spec["restartPolicy"] == "Never"
    (container,) = spec["containers"]
    assert container["args"] == ["check"]
    assert container["image"] == r.container["image"]
    assert container["securityContext"] == r.container["securityContext"]
    assert spec["securityContext"] == r.pod["spec"]["securityContext"]
    assert spec["serviceAccountName"] == r.pod["spec"]["serviceAccountName"]
    assert container["volumeMounts"] == r.container["volumeMounts"]
    assert container["resources"] == r.container["resources"]
    env = {entry["name"]: entry for entry in container["env"]}
    assert env["SCORER_RUN_ID"] == {"name": "SCORER_RUN_ID", "value": "nightly-scorer-check"}
    assert "SCORER_K8S_JOB" not in env  # the pod belongs to no Job
    same = {k: v for k, v in r.env.items() if k not in ("SCORER_RUN_ID", "SCORER_K8S_JOB")}
    assert {k: v for k, v in env.items() if k != "SCORER_RUN_ID"} == same
    assert len(container["env"]) == len(env)  # no variable twice


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_staging_and_prod_pin_the_image_by_digest(helm: Helm, env: str) -> None:
    image = helm.template(ENV_VALUES[env]).container["image"]
    repository, _, digest = image.partition("@")
    assert repository == "registry.example.com/ml/scorer"
    assert digest.startswith("sha256:")
    assert len(digest) == len("sha256:") + 64
