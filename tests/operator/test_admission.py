"""Bad AdminApis are refused by the real API server, with a message saying what to fix (issue 11).

Each case here was accepted by the CRD before, and then failed later, at the Deployment or the kubelet,
where nobody looking at `kubectl get adminapi` could see it. What the CRD refuses, the operator's spec.py
refuses too, for objects stored before the CRD did: the last test stores such objects and watches the
operator mark them Invalid.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from adminapi_operator import GROUP, PLURAL, VERSION
from adminapi_operator.spec import OPERATOR_ENV, POD_ANNOTATIONS_MAX

from .conftest import CRD_FILE, GUIDE_SPEC, kubectl

pytestmark = [pytest.mark.kube]

MIN = {"image": "admin-api:1.0.0", "replicas": 1}


def manifest(namespace: str, name: str, spec: dict) -> str:
    return json.dumps({"apiVersion": f"{GROUP}/{VERSION}", "kind": "AdminApi",
                       "metadata": {"name": name, "namespace": namespace}, "spec": spec})


def create(kubeconfig: Path, namespace: str, name: str, spec: dict):
    # `create`, not client-side `apply`: its last-applied annotation would hit the annotation limit first.
    return kubectl(kubeconfig, "create", "-f", "-", input=manifest(namespace, name, spec), check=False)


def trusting(proxies: list[str], complaint: str) -> tuple[str, dict, str]:
    return "x", {**MIN, "trustedProxies": proxies}, complaint


CASES = {
    # issue 11, case 2: names whose derived names or labels cannot fit, or that cannot name a Service
    "name of 64 characters": ("a" * 64, MIN, "metadata.name may be at most 63 characters long"),
    "name of 70 characters": ("a" * 70, MIN, "metadata.name may be at most 63 characters long"),
    "name starting with a digit": ("9lives", MIN, "metadata.name must be a DNS label"),
    "name with a dot": ("admin.api", MIN, "metadata.name must be a DNS label"),
    # case 3: labels and annotations the Deployment would refuse
    "podLabels key with a space": ("x", {**MIN, "podLabels": {"my label": "v"}}, "label keys are an optional prefix"),
    "podLabels key with a bad prefix": ("x", {**MIN, "podLabels": {"Example.COM/k": "v"}}, "label keys are an optional prefix"),
    "podLabels value with a space": ("x", {**MIN, "podLabels": {"k": "a b"}}, "spec.podLabels[k]: Invalid value: \"a b\": a label value is at most 63"),
    "podLabels value of 64 characters": ("x", {**MIN, "podLabels": {"k": "v" * 64}}, "spec.podLabels.k: Too long: may not be more than 63"),
    "backup podLabels key": ("x", {**MIN, "backup": {"podLabels": {"-k": "v"}}}, "spec.backup.podLabels: Invalid value: label keys"),
    "podAnnotations of 300 KB": ("x", {**MIN, "podAnnotations": {"big": "x" * 300 * 1024}},
                                 f"spec.podAnnotations may be at most {POD_ANNOTATIONS_MAX} characters in all"),
    "podAnnotations of 300 keys": ("x", {**MIN, "podAnnotations": {f"k{i}": "v" for i in range(300)}},
                                   "spec.podAnnotations: Too many: 300: must have at most 256 items"),
    "podAnnotations key with a space": ("x", {**MIN, "podAnnotations": {"my key": "v"}}, "annotation keys are an optional prefix"),
    # case 4: images that can never be pulled
    "image with a space": ("x", {**MIN, "image": "admin api:1.0.0"}, "spec.image must be an image reference"),
    "image with uppercase": ("x", {**MIN, "image": "Admin-Api:1.0.0"}, "spec.image must be an image reference"),
    "image of 300 characters": ("x", {**MIN, "image": "a" * 300}, "the repository name (without :tag and @digest) may be at most 255"),
    "image longer than any reference": ("x", {**MIN, "image": "a" * 600}, "spec.image: Too long: may not be more than 512"),
    # case 1: env the operator sets itself, or that a Pod refuses
    "env setting LLM_ENDPOINT": ("x", {**MIN, "env": [{"name": "LLM_ENDPOINT", "value": "http://x"}]},
                                 "spec.env may not set LLM_ENDPOINT: the operator sets it from spec.llm.endpoint"),
    "env twice the same name": ("x", {**MIN, "env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]},
                                "spec.env[1]: Duplicate value"),
    "env with value and valueFrom": ("x", {**MIN, "env": [{"name": "A", "value": "1", "valueFrom": {
        "fieldRef": {"fieldPath": "metadata.name"}}}]}, "spec.env A: set value or valueFrom, not both"),
    "env valueFrom of nothing": ("x", {**MIN, "env": [{"name": "A", "valueFrom": {}}]},
                                 "valueFrom takes exactly one of secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef"),
    "env valueFrom misspelt": ("x", {**MIN, "env": [{"name": "A", "valueFrom": {"secretKeyref": {"name": "s"}}}]},
                               'unknown field "spec.env[0].valueFrom.secretKeyref"'),
    # references and resources a Pod refuses
    "Secret name with uppercase": ("x", {**MIN, "database": {"urlSecretRef": {"name": "My_Secret", "key": "url"}}},
                                   "spec.database.urlSecretRef: Invalid value: a Secret name is a DNS subdomain"),
    "Secret key with a space": ("x", {**MIN, "llm": {"apiKeySecretRef": {"name": "s", "key": "api key"}}},
                                "spec.llm.apiKeySecretRef.key in body should match"),
    "resource that is no quantity": ("x", {**MIN, "resources": {"requests": {"cpu": "lots"}}},
                                     "resource amounts must be quantities"),
    "resource that does not exist": ("x", {**MIN, "resources": {"limits": {"gpus": 1}}},
                                     "resources are cpu, memory, ephemeral-storage"),
    # trusted proxies: trusting every peer would let any client choose its address (the login throttle's key)
    "trustedProxies '*'": trusting(["*"], 'spec.trustedProxies[0]: Invalid value: "*": trusting every peer'),
    "trustedProxies 0.0.0.0/0": trusting(["10.0.0.5", "0.0.0.0/0"],
                                         'spec.trustedProxies[1]: Invalid value: "0.0.0.0/0": trusting every peer'),
    "trustedProxies ::/0": trusting(["::/0"], "trusting every peer"),
    **{f"trustedProxies {entry!r}": trusting([entry], f'"{entry}": a trusted proxy is an IP address or a CIDR network')
       for entry in ("ingress.example.com", "10.0.0.1,10.0.0.2", "", "10.0.0.0/33")},
    "trustedProxies host bits set": trusting(["10.0.0.1/8"], '"10.0.0.1/8": a network has no host bits set'),
    "trustedProxies IPv6 host bits set": trusting(["2001:db8::1/32"], "a network has no host bits set"),
    "trustedProxies 33 entries": trusting([f"10.0.{i}.0/24" for i in range(33)],
                                          "spec.trustedProxies: Too many: 33: must have at most 32 items"),
    "env setting FORWARDED_ALLOW_IPS": ("x", {**MIN, "env": [{"name": "FORWARDED_ALLOW_IPS", "value": "*"}]},
                                        "spec.env may not set FORWARDED_ALLOW_IPS: the operator sets it from spec.trustedProxies"),
    # the embeddings model: a bounded name, set only through spec.embeddings.model
    "embeddings model empty": ("x", {**MIN, "embeddings": {"model": ""}},
                               "spec.embeddings.model: Invalid value: \"\": spec.embeddings.model in body should be at least 1 chars long"),
    "embeddings model of 257 characters": ("x", {**MIN, "embeddings": {"model": "m" * 257}},
                                           "spec.embeddings.model: Too long: may not be more than 256"),
    "env setting EMBEDDING_MODEL": ("x", {**MIN, "env": [{"name": "EMBEDDING_MODEL", "value": "bge"}]},
                                    "spec.env may not set EMBEDDING_MODEL: the operator sets it from spec.embeddings.model"),
}


@pytest.mark.parametrize("name, spec, complaint", CASES.values(), ids=CASES.keys())
def test_a_bad_spec_is_refused_with_its_reason(crd, kubeconfig, namespace, kube_api, name, spec, complaint):
    result = create(kubeconfig, namespace, name, spec)
    assert result.returncode != 0 and complaint in result.stderr, result.stderr[-2000:]
    stored = client.CustomObjectsApi(kube_api).list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    assert stored["items"] == []


def test_every_env_name_the_operator_sets_is_refused(crd, namespace, kube_api):
    api = client.CustomObjectsApi(kube_api)
    for env_name, source in OPERATOR_ENV.items():
        body = json.loads(manifest(namespace, "x", {**MIN, "env": [{"name": env_name, "value": "v"}]}))
        with pytest.raises(ApiException) as refused:
            api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        assert refused.value.status == 422
        assert f"spec.env may not set {env_name}: the operator sets it from {source}" in json.loads(refused.value.body)["message"]


GOOD = {
    "the guide's sample": ("admin-api", GUIDE_SPEC),
    "a name of 63 characters": ("a" * 63, MIN),
    "labels at their limits": ("x", {**MIN, "podLabels": {"example.com/" + "k" * 63: "v" * 63, "empty": ""},
                                     "backup": {"podLabels": {"team": "chat"}}}),
    "annotations of exactly the limit": ("x", {**MIN, "podAnnotations": {
        "Prometheus.io/scrape": "true", "note": "x" * (POD_ANNOTATIONS_MAX - len("Prometheus.io/scrape") - 4 - 4)}}),
    "an image with registry, port, tag and digest": ("x", {**MIN, "image": "registry.example.com:5000/team/admin-api:1.0.0@sha256:" + "a" * 64}),
    "an image with a 255-character repository and a long tag": ("x", {**MIN, "image": "a" * 255 + ":" + "t" * 128}),
    "env of the user's own": ("x", {**MIN, "env": [{"name": "FEATURE_X", "value": "on"},
                                                   {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}),
    "resources as integers and strings": ("x", {**MIN, "resources": {"requests": {"cpu": 1, "memory": "256Mi"},
                                                                   "limits": {"cpu": "2", "memory": "1Gi"}}}),
    "trusted proxies, 32 of them": ("x", {**MIN, "trustedProxies": [
        "10.0.0.5", "10.42.0.0/16", "192.168.1.7/32", "fd00::/8", "2001:DB8::1", "2001:db8::/32"]
        + [f"172.16.{i}.0/24" for i in range(26)]}),
    "an embeddings endpoint and model": ("x", {**MIN, "embeddings": {"endpoint": "http://vllm-embeddings:8000/v1",
                                                                     "model": "BAAI/bge-small-en-v1.5"}}),
    "an embeddings model of 256 characters": ("x", {**MIN, "embeddings": {"model": "m" * 256}}),
}


@pytest.mark.parametrize("name, spec", GOOD.values(), ids=GOOD.keys())
def test_a_good_spec_at_the_limits_is_accepted(crd, kubeconfig, namespace, name, spec):
    result = create(kubeconfig, namespace, name, spec)
    assert result.returncode == 0, result.stderr[-2000:]


def without_validations(schema):
    """The CRD's schema without the checks added for issue 11: what older clusters stored unchecked."""
    if isinstance(schema, dict):
        return {k: without_validations(v) for k, v in schema.items()
                if k not in ("x-kubernetes-validations", "pattern", "maxLength", "maxProperties", "maxItems")}
    if isinstance(schema, list):
        return [without_validations(v) for v in schema]
    return schema


@pytest.fixture
def unchecked_crd(crd, kubeconfig, tmp_path):
    """The CRD without its checks for as long as a test needs to store bad objects; then the real one again."""
    loose = yaml.safe_load(CRD_FILE.read_text())
    version = loose["spec"]["versions"][0]
    version["schema"] = without_validations(copy.deepcopy(version["schema"]))
    path = tmp_path / "crd.yaml"
    path.write_text(yaml.safe_dump(loose))
    kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", str(path))
    restore = lambda: kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))  # noqa: E731
    try:
        yield restore
    finally:
        restore()


STORED_BEFORE = {
    "env-owned": ({**MIN, "env": [{"name": "MINIO_SECRET_KEY", "value": "x"}]}, "spec.env may not set MINIO_SECRET_KEY"),
    "bad-label": ({**MIN, "podLabels": {"my label": "v"}}, "is not a valid label key"),
    "big-annotations": ({**MIN, "podAnnotations": {"big": "x" * 100_000}}, "more than the 32768 allowed"),
    "bad-image": ({**MIN, "image": "admin api:1"}, "is not an image reference"),
    "trusts-everyone": ({**MIN, "trustedProxies": ["*"]}, "spec.trustedProxies: '*': trusting every peer"),
}


def test_objects_stored_before_the_crd_checked_them_are_invalid(local_cluster, unchecked_crd, operator, adminapis):
    for name, (spec, _) in STORED_BEFORE.items():
        adminapis.create(name, spec)
    unchecked_crd()  # the real CRD is back: stored objects are not checked again, the operator must
    for name, (_, complaint) in STORED_BEFORE.items():
        status = adminapis.wait_phase(name, "Invalid")
        assert complaint in status["message"]
        assert adminapis.deployment(name) is None
        assert "InvalidSpec" in adminapis.event_reasons(name)
