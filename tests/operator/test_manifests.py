"""manifests/: valid objects, least-privilege RBAC, and an operator that works with exactly those rights."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.support.kube import REPO_ROOT, kubectl_binary

from .conftest import GUIDE_SPEC, Operator, kubectl

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
                assert set(rule["verbs"]) == {"get", "create"}  # never list or watch Secrets


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


@pytest.mark.kube
def test_operator_works_with_exactly_the_manifests_rights(local_cluster, kubeconfig, namespace, adminapis, tmp_path):
    kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-k", str(REPO_ROOT / "manifests"))
    # kwok would only pretend to run the operator's pod; run it here, as its ServiceAccount.
    kubectl(kubeconfig, "-n", "adminapi-operator", "scale", "deployment", "adminapi-operator", "--replicas=0")
    sa_kubeconfig = tmp_path / "operator.kubeconfig"
    path = f"{Path(kubectl_binary()).parent}:{os.environ['PATH']}"
    subprocess.run([str(REPO_ROOT / "hack" / "operator-kubeconfig.sh"), str(kubeconfig), str(sa_kubeconfig)],
                   check=True, env={**os.environ, "PATH": path})
    # The ServiceAccount really is limited: it may not list Secrets.
    denied = kubectl(sa_kubeconfig, "-n", namespace, "get", "secrets", check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()

    operator = Operator(sa_kubeconfig, namespace, tmp_path / "operator.log").start()
    try:
        adminapis.create("admin-api", {**GUIDE_SPEC, "rollout": {"healthChecks": False}})
        adminapis.wait_phase("admin-api", "Ready")
        adminapis.patch_spec("admin-api", {"image": "admin-api:1.1.0"})  # a rollout: Jobs, status, Events
        adminapis.wait_status("admin-api", lambda s: s.get("lastGoodImage") == "admin-api:1.1.0")
    finally:
        operator.stop()
    assert "forbidden" not in operator.log.lower(), operator.log[-2000:]
