"""Least privilege, proven on the real API server (issue 11, case 6).

The operator runs as its ServiceAccount with exactly the manifests' RBAC, its arguments taken from the
manifests' Deployment, behind a proxy that records every request it makes (tests/support/api_recorder.py).
Through a whole life (first install, a rollout with backup and migration Jobs, a failed rollout rolled back
with a database restore), no request may be refused, and every verb granted must have been used.
"""
from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.support.api_recorder import ApiRecorder, granted, used
from tests.support.kube import REPO_ROOT, kubectl_binary, wait_for

from .conftest import OPERATOR, AdminApis, Operator, kubectl
from .test_manifests import render
from .test_rollouts import A, B, BASE, C, NOT_READY

pytestmark = [pytest.mark.kube]

NAME = "chat"
SERVICE_ACCOUNT = ("adminapi-operator", "adminapi-operator")


def rules_bound_to_the_operator(objects: list[dict]) -> list[dict]:
    """The rules of every role the manifests bind to the operator's ServiceAccount."""
    roles = {(o["kind"], o["metadata"]["name"]): o for o in objects if o["kind"] in ("ClusterRole", "Role")}
    rules = []
    for binding in (o for o in objects if o["kind"] in ("ClusterRoleBinding", "RoleBinding")):
        if any((s.get("namespace"), s["name"]) == SERVICE_ACCOUNT for s in binding["subjects"]):
            rules += roles[(binding["roleRef"]["kind"], binding["roleRef"]["name"])]["rules"]
    return rules


def manifest_args(objects: list[dict]) -> list[str]:
    [dep] = [o for o in objects if o["kind"] == "Deployment"]
    return [a for a in dep["spec"]["template"]["spec"]["containers"][0]["args"] if not a.startswith("--liveness")]


class RecordedOperator(Operator):
    """The operator process with the manifests' arguments instead of the test namespace."""

    def __init__(self, kubeconfig: Path, args: list[str], log_path: Path):
        super().__init__(kubeconfig, "unused", log_path)
        self.args = args

    def start(self) -> RecordedOperator:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.health_port = s.getsockname()[1]
        log = open(self.log_path, "a")
        self.process = subprocess.Popen(
            [str(OPERATOR), *self.args, "--log-format", "plain", f"--liveness=http://127.0.0.1:{self.health_port}/healthz"],
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig)}, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self


def install(kubeconfig: Path, variant: str, tmp_path: Path) -> Path:
    """kubectl apply -k VARIANT; the operator's own pod scaled away (kwok would only pretend to run it);
    a kubeconfig that is its ServiceAccount."""
    kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-k", str(REPO_ROOT / variant))
    kubectl(kubeconfig, "-n", "adminapi-operator", "scale", "deployment", "adminapi-operator", "--replicas=0")
    sa_kubeconfig = tmp_path / "operator.kubeconfig"
    path = f"{Path(kubectl_binary()).parent}:{os.environ['PATH']}"
    subprocess.run([str(REPO_ROOT / "hack" / "operator-kubeconfig.sh"), str(kubeconfig), str(sa_kubeconfig)],
                   check=True, env={**os.environ, "PATH": path})
    return sa_kubeconfig


@pytest.fixture
def clusterwide_only(kubeconfig):
    """The namespaced variant's bindings removed (a run of it may have left them), and again afterwards."""
    def remove():
        kubectl(kubeconfig, "delete", "clusterrolebinding", "adminapi-operator-namespaces", "--ignore-not-found")
    remove()
    yield
    remove()


def test_the_verbs_granted_are_exactly_the_verbs_used_and_none_is_refused(
        local_cluster, crd, clusterwide_only, kubeconfig, namespace, adminapis, tmp_path):
    objects = render("manifests")
    sa_kubeconfig = install(kubeconfig, "manifests", tmp_path)
    # The ServiceAccount really is limited: it may not read Secrets.
    denied = kubectl(sa_kubeconfig, "-n", namespace, "get", "secret", "anything", check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()

    with ApiRecorder(kubeconfig) as recorder:
        # Nothing the watches showed is trusted: every read the operator may send (before a watch shows an object,
        # or once its trust has run out) is sent here.
        operator = RecordedOperator(recorder.kubeconfig(sa_kubeconfig, tmp_path / "via-proxy"),
                                    [*manifest_args(objects), "--trust-watch-seconds", "0"],
                                    tmp_path / "operator.log").start()
        try:
            spec = {**BASE, "image": A, "rollback": {"restoreDatabase": True}}
            adminapis.create(NAME, spec)
            adminapis.wait_phase(NAME, "Ready")
            adminapis.patch_spec(NAME, {"image": B})  # backup and migration Jobs, then the new version
            adminapis.wait_status(NAME, lambda s: s.get("lastGoodImage") == B and s["phase"] == "Ready", timeout=180)
            adminapis.patch_spec(NAME, {"image": C, "podLabels": NOT_READY})  # never ready: restore and roll back
            adminapis.wait_phase(NAME, "RolledBack", timeout=240)
        finally:
            operator.stop()
    # Cluster-wide, the operator also meets other tests' AdminApis, whose namespaces may be terminating (the
    # API server then refuses new Events there with a 403): judge only this test's namespace and the cluster scope.
    ours = [r for r in recorder.requests
            if "/namespaces/" not in r.path or r.path.split("/namespaces/", 1)[1].split("/")[0] == namespace]
    refused = [r for r in ours if r.status in (401, 403)]
    assert refused == [], refused
    need, have = used(recorder.requests), granted(rules_bound_to_the_operator(objects))
    assert need - have == set()  # (also proven by the empty `refused` above)
    assert have - need == set()  # no verb the operator never uses
    assert not any(r == "secrets" and v != "create" for _, r, v in have)
    # The pods while they come are listed from the API server's watch cache; before the restore, through to etcd.
    pod_lists = {parse_qs(r.query).get("resourceVersion", ["(consistent)"])[0]
                 for r in ours if r.verb == "list" and r.resource == ("", "pods")}
    assert pod_lists == {"0", "(consistent)"}, pod_lists


@pytest.fixture
def ai_streams(kube_api, kubeconfig):
    """The namespace the namespaced variant manages (fixed by its manifests), emptied afterwards."""
    core = client.CoreV1Api(kube_api)
    try:
        core.create_namespace({"metadata": {"name": "ai-streams"}})
    except ApiException as e:
        if e.status != 409:
            raise
    yield "ai-streams"
    kubectl(kubeconfig, "-n", "ai-streams", "delete", "adminapis", "--all", "--wait=false")
    kubectl(kubeconfig, "delete", "clusterrolebinding", "adminapi-operator-namespaces", "--ignore-not-found")


def test_the_namespaced_variant_works_with_its_rights_alone(local_cluster, crd, kubeconfig, ai_streams, kube_api,
                                                             tmp_path):
    objects = render("manifests/namespaced")
    # Only the namespaced variant's bindings: the cluster-wide one of the other test goes.
    kubectl(kubeconfig, "delete", "clusterrolebinding", "adminapi-operator", "--ignore-not-found")
    sa_kubeconfig = install(kubeconfig, "manifests/namespaced", tmp_path)
    adminapis = AdminApis(kube_api, ai_streams)
    with ApiRecorder(kubeconfig) as recorder:
        operator = RecordedOperator(recorder.kubeconfig(sa_kubeconfig, tmp_path / "via-proxy"),
                                    manifest_args(objects), tmp_path / "operator.log").start()
        try:
            adminapis.create(NAME, {**BASE, "image": A, "backup": {"enabled": False}})
            wait_for(lambda: adminapis.status(NAME).get("phase") == "Ready", timeout=120, interval=0.5,
                     what="the AdminApi Ready under the namespaced RBAC")
        finally:
            operator.stop()
    refused = [r for r in recorder.requests if r.status in (401, 403)]
    assert refused == [], refused
    assert used(recorder.requests) <= granted(rules_bound_to_the_operator(objects))
