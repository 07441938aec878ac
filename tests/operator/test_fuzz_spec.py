"""Fuzzing the AdminApi spec against the real API server and the operator (issue 11).

Hypothesis generates AdminApis, good and bad (names, images, labels, annotations, env, resources, replicas),
and applies each to the real API server, the operator running in-process under Kopf with every request it
sends counted. Each one is either refused at admission with a 4xx and a message, or reaches a phase for its
generation within a bounded time; and then the operator neither loops (a handful of reconciles at most in a
quiet window, no failing request) nor logs a traceback.

ADMINAPI_FUZZ_EXAMPLES sets how many (default 20); the examples are derandomized so a run is repeatable.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from kopf.testing import KopfRunner
from kubernetes.client.exceptions import ApiException
from kubernetes.config import kube_config

from adminapi_operator import GROUP, PLURAL, VERSION, handlers
from adminapi_operator.spec import OPERATOR_ENV

from .test_steady_requests import Requests

pytestmark = [pytest.mark.kube]

EXAMPLES = int(os.environ.get("ADMINAPI_FUZZ_EXAMPLES", "20"))
PHASE_WITHIN = 60.0  # seconds for an accepted AdminApi to show a phase
QUIET_WINDOW = 6.0
MAX_RECONCILES_WHEN_QUIET = 3

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


@pytest.fixture
def in_process_operator(local_cluster, crd, kubeconfig, namespace, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    requests = Requests(monkeypatch)
    with KopfRunner(["run", "--standalone", "-n", namespace, "-m", "adminapi_operator.handlers"]) as runner:
        yield requests
    assert runner.exception is None
    assert "Traceback" not in runner.output, runner.output[-4000:]
    assert not [line for line in runner.output.splitlines() if "reconciling" in line and "failed" in line]


@pytest.mark.xfail(strict=True, reason="open finding (issue 11): after a phase is reached, some instances are "
                   "reconciled more than 3 times in a quiet 6 s window (Invalid for replicas without qdrant.host; "
                   "Progressing 0/0 with replicas 0); no failing request and no traceback were seen")
def test_every_generated_adminapi_is_refused_or_reaches_a_phase(in_process_operator, adminapis, namespace):
    requests = in_process_operator
    seen: set[str] = set()
    tally = {"refused": 0}

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(name=names, spec=specs)
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
        phase = status["phase"]
        tally[phase] = tally.get(phase, 0) + 1
        assert status.get("message"), status

        start = len(requests.sent)
        time.sleep(QUIET_WINDOW)
        window = requests.sent[start:]
        mine = f"/{PLURAL}/{name}"
        reconciles = [r for r in window if r[0] == "GET" and r[1].endswith(mine)]
        assert len(reconciles) <= MAX_RECONCILES_WHEN_QUIET, (phase, status["message"], window)
        assert not [r for r in window if r[2] >= 400], (phase, status["message"], window)
        adminapis.delete(name)

    one()
    # Kopf's test runner holds sys.stdout while it runs: the real terminal is sys.__stderr__.
    print(f"\nfuzzed AdminApis: {len(seen)} distinct names; outcomes {tally}", file=sys.__stderr__)
