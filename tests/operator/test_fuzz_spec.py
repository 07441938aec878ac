"""Fuzzing the AdminApi spec against the real API server and the operator (issue 11).

Hypothesis generates AdminApis, good and bad (names, images, labels, annotations, env, resources, replicas),
and applies each to the real API server, the operator running in-process under Kopf with every request it
sends counted. Each one is either refused at admission with a 4xx and a message, or reaches a phase for its
generation within a bounded time, then comes to rest within a bounded time (a phase that waits for nothing
more, and no reconcile for a while: a hot loop never gets there); at rest the operator leaves it alone (no
reconcile at all in a quiet window: the resync is a minute away), sends no failing request and logs no
traceback.

ADMINAPI_FUZZ_EXAMPLES sets how many (default 20); the examples are derandomized so a run is repeatable.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st
from kubernetes.client.exceptions import ApiException

from adminapi_operator import GROUP, PLURAL, VERSION, handlers
from adminapi_operator.spec import OPERATOR_ENV

from .test_steady_requests import Requests, in_process_operator as operator_in_process

pytestmark = [pytest.mark.kube]

EXAMPLES = int(os.environ.get("ADMINAPI_FUZZ_EXAMPLES", "20"))
PHASE_WITHIN = 60.0  # seconds for an accepted AdminApi to show a phase
# At rest: not Progressing (kwok's pods become ready, or the 10 s progress deadline fails the rollout), and
# no reconcile for REST_SECONDS: the Deployment and PDB controllers' status writes, and the events they
# bring, are over.
REST_SECONDS = 2.0
AT_REST_WITHIN = 40.0
QUIET_WINDOW = 6.0

dns_label = st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True)
names = st.one_of(dns_label, st.sampled_from(["a" * 63, "b" * 64, "9lives", "a.b", "Upper", "x-"]))
good_images = st.sampled_from(["admin-api:1.0.0", "registry.example.com:5000/team/admin-api:2.1",
                               "admin-api@sha256:" + "c" * 64, "a" * 255 + ":1"])
images = st.one_of(
    good_images, good_images,  # most specs should get past the image to the rest
    st.sampled_from(["admin api:1", "Admin:1", "a" * 300, " admin-api:1", "admin-api:"]),
    st.text(min_size=1, max_size=20),
)
label_keys = st.one_of(st.from_regex(r"([a-z]{1,8}\.example\.com/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,10}[A-Za-z0-9])?",
                                     fullmatch=True), st.text(min_size=1, max_size=12))
label_values = st.one_of(st.from_regex(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,10}[A-Za-z0-9])?)?", fullmatch=True),
                         st.text(max_size=70))
env_names = st.one_of(st.sampled_from(sorted(OPERATOR_ENV)), st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True))
env_items = st.one_of(
    st.fixed_dictionaries({"name": env_names, "value": st.text(max_size=20)}),
    st.fixed_dictionaries({"name": env_names, "valueFrom": st.fixed_dictionaries({"fieldRef": st.fixed_dictionaries(
        {"fieldPath": st.sampled_from(["metadata.name", "spec.nodeName", "status.podIP", "spec.nowhere", "x"])})})}),
)
quantities = st.one_of(st.sampled_from(["100m", "1", "256Mi", "1Gi", 2, "lots", "-1", "1.5.5"]))
resources = st.fixed_dictionaries({}, optional={
    "requests": st.dictionaries(st.sampled_from(["cpu", "memory", "gpu"]), quantities, max_size=2),
    "limits": st.dictionaries(st.sampled_from(["cpu", "memory"]), quantities, max_size=2)})
specs = st.fixed_dictionaries({"image": images}, optional={
    "replicas": st.integers(min_value=0, max_value=3),
    "qdrant": st.just({"host": "qdrant"}),
    "podLabels": st.dictionaries(label_keys, label_values, max_size=3),
    "podAnnotations": st.one_of(st.dictionaries(label_keys, st.text(max_size=30), max_size=3),
                                st.just({"big": "x" * 40_000})),
    "env": st.lists(env_items, max_size=3),
    "resources": resources,
})


def reconciles(requests: Requests, name: str, since: int) -> list[tuple[str, str, int]]:
    """The operator's reconciles of `name` since request `since`: each starts with a GET of the AdminApi."""
    return [r for r in requests.sent[since:] if r[0] == "GET" and r[1].endswith(f"/{PLURAL}/{name}")]


@pytest.fixture
def in_process_operator(local_cluster, crd, kubeconfig, namespace, monkeypatch):
    requests = Requests(monkeypatch)
    with operator_in_process(monkeypatch, kubeconfig, namespace) as runner:
        yield requests
    assert runner.exception is None
    assert "Traceback" not in runner.output, runner.output[-4000:]
    assert not [line for line in runner.output.splitlines() if "reconciling" in line and "failed" in line]


def test_every_generated_adminapi_is_refused_or_reaches_a_phase(in_process_operator, adminapis, namespace):
    requests = in_process_operator
    seen: set[str] = set()
    tally = {"refused": 0}

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(name=names, spec=specs)
    # The finding's cases, whatever the generator draws: pods coming up, Invalid, and scaled to zero.
    @example(name="ready", spec={"image": "admin-api:1.0.0", "replicas": 2, "qdrant": {"host": "qdrant"}})
    @example(name="invalid", spec={"image": "admin-api:1.0.0", "replicas": 2})
    @example(name="zero", spec={"image": "admin-api:1.0.0", "replicas": 0})
    def one(name, spec):
        if name in seen:  # a name may come back: a valid one gets a suffix, a special one was tried
            if not re.fullmatch(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", name):
                return
            name = f"{name}-{len(seen)}"
        seen.add(name)
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AdminApi",
                "metadata": {"name": name}, "spec": {"rollout": {"healthChecks": False, "timeoutSeconds": 10},
                                                      "backup": {"enabled": False}, **spec}}
        try:
            created = adminapis.api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        except ApiException as e:
            assert 400 <= e.status < 500, (e.status, e.body)
            assert json.loads(e.body)["message"], e.body
            tally["refused"] += 1
            tally[e.status] = tally.get(e.status, 0) + 1
            return
        generation = created["metadata"]["generation"]
        deadline = time.monotonic() + PHASE_WITHIN
        while True:
            status = adminapis.status(name)
            if status.get("phase") and status.get("observedGeneration") == generation:
                break
            assert time.monotonic() < deadline, f"{name}: no phase within {PHASE_WITHIN:g}s: {json.dumps(spec)[:500]}"
            time.sleep(0.5)
        assert status.get("message"), status
        deadline = time.monotonic() + AT_REST_WITHIN
        while True:
            mark = len(requests.sent)
            time.sleep(REST_SECONDS)
            status = adminapis.status(name)
            if status["phase"] != "Progressing" and not reconciles(requests, name, mark):
                break
            assert time.monotonic() < deadline, (f"{name} not at rest within {AT_REST_WITHIN:g}s: "
                                                 f"{status['phase']}: {status.get('message')}")
        phase = status["phase"]
        tally[phase] = tally.get(phase, 0) + 1

        start = len(requests.sent)
        time.sleep(QUIET_WINDOW)
        window = requests.sent[start:]
        assert reconciles(requests, name, start) == [], (phase, status["message"], window)
        # A GET answered 404 is how a reconcile learns that an AdminApi is gone (an earlier example's, whose
        # owned objects the garbage collector deletes now): not a failure. Anything else is.
        assert not [r for r in window if r[2] >= 400 and (r[0], r[2]) != ("GET", 404)], (phase, window)
        adminapis.delete(name)

    one()
    # Kopf's test runner holds sys.stdout while it runs: the real terminal is sys.__stderr__.
    print(f"\nfuzzed AdminApis: {len(seen)} distinct names; outcomes {tally}", file=sys.__stderr__)
