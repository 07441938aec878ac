"""Time from `kubectl apply` of an AdminApi to Ready, next to `kubectl apply` of the same rendered objects and
`kubectl rollout status` (the baseline: what a platform engineer does by hand), measured in the same run.
Printed, not asserted: this machine is shared and noisy."""
from __future__ import annotations

import json
import statistics
import time

import pytest

from adminapi_operator import builders
from adminapi_operator.spec import AdminApiSpec

from .conftest import GUIDE_SPEC, kubectl

pytestmark = [pytest.mark.kube, pytest.mark.bench]
ROUNDS = 5


def test_time_to_ready(local_cluster, operator, kubeconfig, namespace, kube_api, capsys):
    from kubernetes import client
    uid = client.CoreV1Api(kube_api).read_namespace(namespace).metadata.uid  # any owner uid will do for the baseline

    def by_operator(name: str) -> float:
        manifest = {"apiVersion": "aistreams.io/v1alpha1", "kind": "AdminApi",
                    "metadata": {"name": name, "namespace": namespace}, "spec": GUIDE_SPEC}
        started = time.perf_counter()
        kubectl(kubeconfig, "apply", "-f", "-", input=json.dumps(manifest))
        kubectl(kubeconfig, "-n", namespace, "wait", f"adminapi/{name}", "--for=jsonpath={.status.phase}=Ready",
                "--timeout=120s")
        return time.perf_counter() - started

    def by_hand(name: str) -> float:
        owner = builders.Owner(name=name, namespace=namespace, uid=uid)
        spec = AdminApiSpec.parse(GUIDE_SPEC, name)
        objects = [builders.bootstrap_secret(owner, "admin", "x" * 24), builders.service(owner, spec),
                   builders.pod_disruption_budget(owner, spec),
                   builders.deployment(owner, spec, builders.pod_template(name, spec))]
        for obj in objects:
            obj["metadata"].pop("ownerReferences")
            obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] = "hand"  # not ours: the operator ignores it
        started = time.perf_counter()
        kubectl(kubeconfig, "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
        kubectl(kubeconfig, "-n", namespace, "rollout", "status", f"deployment/{name}", "--timeout=120s")
        return time.perf_counter() - started

    operator_times, hand_times = [], []
    for i in range(ROUNDS):  # interleaved, so both see the same machine load
        operator_times.append(by_operator(f"op-{i}"))
        hand_times.append(by_hand(f"hand-{i}"))
    op, hand = statistics.median(operator_times), statistics.median(hand_times)
    with capsys.disabled():
        print(f"\napply -> Ready, median of {ROUNDS}: AdminApi via the operator {op:.2f}s, "
              f"same objects by kubectl apply + rollout status {hand:.2f}s, ratio {op / hand:.2f}x")
