"""manifests/: valid objects and least-privilege RBAC (test_rbac.py runs the operator with exactly those rights)."""
from __future__ import annotations

import subprocess

import kubernetes_validate
import pytest
import yaml

from tests.support.kube import REPO_ROOT, kubectl_binary

K8S_VERSION = "1.35"


def render(path: str) -> list[dict]:
    out = subprocess.run([kubectl_binary(), "kustomize", str(REPO_ROOT / path)], capture_output=True, text=True, check=True)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.mark.parametrize("variant", ["manifests", "manifests/namespaced"])
def test_every_manifest_is_valid(variant):
    objects = render(variant)
    kinds = {o["kind"] for o in objects}
    assert {"CustomResourceDefinition", "Namespace", "ServiceAccount", "ClusterRole", "Deployment"} <= kinds
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    sample = yaml.safe_load((REPO_ROOT / "manifests" / "sample-adminapi.yaml").read_text())
    assert sample["kind"] == "AdminApi" and sample["spec"]["image"]


@pytest.mark.parametrize("variant", ["manifests", "manifests/namespaced"])
def test_rbac_is_least_privilege(variant):
    for obj in render(variant):
        for rule in obj.get("rules", []):
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"{obj['metadata']['name']}: wildcard in {field}"
            if "secrets" in rule["resources"]:
                assert rule["verbs"] == ["create"]  # never read a Secret: only create the one it generates
            assert not {"update", "delete", "deletecollection", "escalate", "bind", "impersonate"} & set(rule["verbs"])


def test_operator_deployment_is_hardened():
    [dep] = [o for o in render("manifests") if o["kind"] == "Deployment"]
    spec = dep["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert ":latest" not in container["image"]
