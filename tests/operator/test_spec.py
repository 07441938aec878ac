"""spec.py: the guide's defaults, and the checks that keep a spec that cannot work from being deployed.

The CRD refuses the same at admission (tests/operator/test_admission.py); spec.py repeats them for objects
the API server stored before the CRD did. Both lists must say what the builders really do.
"""
import dataclasses
import re
import types
import typing

import pytest
import yaml

from adminapi_operator import builders, spec as spec_module
from adminapi_operator.spec import IMAGE_REFERENCE, OPERATOR_ENV, AdminApiSpec, InvalidSpec, SecretRef

from .conftest import CRD_FILE

ONE = {"image": "a:1", "replicas": 1}


def parse(**fields):
    return AdminApiSpec.parse({**ONE, **fields}, "x")


def refused(raw, name="x") -> str:
    with pytest.raises(InvalidSpec) as e:
        AdminApiSpec.parse(raw, name)
    return str(e.value)


def test_defaults_are_the_guides():
    spec = AdminApiSpec.parse({"image": "a:1", "qdrant": {"host": "q"}}, "x")
    assert (spec.replicas, spec.port, spec.service_port, spec.service_type) == (3, 8001, 8001, "ClusterIP")
    assert spec.database_url.name == "x-secrets" and spec.database_url.key == "database-url"
    assert spec.rollout_timeout_seconds == 300 and spec.rollout_health_checks and spec.backup_enabled


def test_embedded_qdrant_refuses_several_replicas():
    with pytest.raises(InvalidSpec, match="qdrant.host"):
        AdminApiSpec.parse({"image": "a:1", "replicas": 2}, "x")
    assert AdminApiSpec.parse({"image": "a:1", "replicas": 1}, "x").replicas == 1


def test_image_is_required():
    with pytest.raises(InvalidSpec, match="image"):
        AdminApiSpec.parse({}, "x")


# --- the environment the operator owns ----------------------------------------------------------------

def every_option_set() -> AdminApiSpec:
    """A spec with every field the builders read set (whatever fields exist), but no extra env."""
    hints = typing.get_type_hints(AdminApiSpec)
    dummy = {SecretRef: SecretRef("s", "k"), str: "x", bool: True, int: 2}
    values = {}
    for f in dataclasses.fields(AdminApiSpec):
        hint = hints[f.name]
        kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        if kind := next((k for k in kinds if k in dummy), None):
            values[f.name] = dummy[kind]
        elif typing.get_origin(hint) is tuple and typing.get_args(hint)[0] is str:
            values[f.name] = ("x",)
    return AdminApiSpec(**values)


def env_names_the_builders_set() -> set[str]:
    spec = every_option_set()
    template = builders.pod_template("x", spec)["spec"]
    containers = template["containers"] + template.get("initContainers", [])
    return {e["name"] for c in containers for e in c["env"]} | {e["name"] for e in builders.service_env(spec)}


def test_the_owned_env_list_is_what_the_builders_set():
    assert env_names_the_builders_set() == set(OPERATOR_ENV)


def crd_spec_schema() -> dict:
    crd = yaml.safe_load(CRD_FILE.read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def cel_map(text: str) -> dict[str, str]:
    return dict(re.findall(r"'([A-Z_]+)': '([^']*)'", text))


def test_the_crd_refuses_the_same_env_names_with_the_same_explanations():
    [rule, _] = crd_spec_schema()["properties"]["env"]["items"]["x-kubernetes-validations"]
    assert cel_map(rule["rule"]) == OPERATOR_ENV
    assert cel_map(rule["messageExpression"]) == OPERATOR_ENV


def test_the_crd_checks_image_references_with_the_same_grammar():
    rule = crd_spec_schema()["properties"]["image"]["x-kubernetes-validations"][0]["rule"]
    assert re.fullmatch(r"self\.matches\(r'(.*)'\)", rule.strip()).group(1) == IMAGE_REFERENCE


@pytest.mark.parametrize("name", sorted(OPERATOR_ENV))
def test_env_may_not_set_what_the_operator_sets(name):
    message = refused({**ONE, "env": [{"name": name, "value": "x"}]})
    assert f"spec.env may not set {name}: the operator sets it from {OPERATOR_ENV[name]}" in message


def test_env_names_are_unique_and_take_one_source():
    assert "sets A more than once" in refused({**ONE, "env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]})
    assert "value or valueFrom, not both" in refused(
        {**ONE, "env": [{"name": "A", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]})
    assert parse(env=[{"name": "FEATURE_X", "value": "on"}]).extra_env[0]["name"] == "FEATURE_X"


def test_the_embeddings_model_is_read():
    spec = parse(embeddings={"endpoint": "http://e:8000/v1", "model": "BAAI/bge-small-en-v1.5"})
    assert (spec.embeddings_endpoint, spec.embeddings_model) == ("http://e:8000/v1", "BAAI/bge-small-en-v1.5")
    assert parse(embeddings={"endpoint": "http://e:8000/v1"}).embeddings_model is None


# --- trusted proxies (FORWARDED_ALLOW_IPS) --------------------------------------------------------------

def test_no_proxy_is_trusted_by_default():
    assert parse().trusted_proxies == ()


def test_trusted_proxies_are_addresses_and_networks():
    proxies = ["10.0.0.5", "10.42.0.0/16", "fd00::/8", "2001:DB8::1", "192.168.1.7/32"]
    assert parse(trustedProxies=proxies).trusted_proxies == tuple(proxies)


@pytest.mark.parametrize("entry, complaint", [
    ("*", "trusting every peer ('*', 0.0.0.0/0, ::/0) is refused"),
    ("0.0.0.0/0", "trusting every peer"),
    ("::/0", "trusting every peer"),
    ("ingress.example.com", "not an IP address or a CIDR network"),
    ("10.0.0.1,*", "not an IP address or a CIDR network"),  # one entry cannot smuggle in another
    ("10.0.0.0/33", "not an IP address or a CIDR network"),
    ("", "not an IP address or a CIDR network"),
    ("10.0.0.1/8", "a network has no host bits set: 10.0.0.0/8, not 10.0.0.1/8"),
])
def test_a_trusted_proxy_that_is_not_one_is_refused(entry, complaint):
    message = refused({**ONE, "trustedProxies": ["10.0.0.5", entry]})
    assert f"spec.trustedProxies: {entry!r}: {complaint}" in message


def test_trusted_proxies_are_bounded():
    limit = spec_module.TRUSTED_PROXIES_MAX
    many = [f"10.0.{i}.0/24" for i in range(limit + 1)]
    assert f"spec.trustedProxies has {limit + 1} entries; at most {limit}" in refused({**ONE, "trustedProxies": many})
    assert len(parse(trustedProxies=many[:limit]).trusted_proxies) == limit


# --- names, labels, annotations, image, resources ------------------------------------------------------

@pytest.mark.parametrize("name", ["a" * 64, "9lives", "a.b", "Admin", "a-"])
def test_the_name_must_be_a_dns_label_that_fits(name):
    assert "metadata.name" in refused(ONE, name)


def test_a_63_character_name_is_fine():
    assert AdminApiSpec.parse(ONE, "a" * 63).image == "a:1"


@pytest.mark.parametrize("field", ["podLabels", "backup"])
@pytest.mark.parametrize("labels, complaint", [
    ({"bad key": "v"}, "not a valid label key"),
    ({"UPPER.example.com/k": "v"}, "prefix must be a DNS subdomain"),
    ({"k" * 64: "v"}, "not a valid label key"),
    ({"k": "bad value!"}, "not a valid label value"),
    ({"k": "v" * 64}, "not a valid label value"),
])
def test_label_syntax(field, labels, complaint):
    raw = {**ONE, "podLabels": labels} if field == "podLabels" else {**ONE, "backup": {"podLabels": labels}}
    assert complaint in refused(raw)


def test_valid_labels_pass():
    labels = {"team": "chat", "example.com/tier": "", "a_b.c-d": "A.b_c-9"}
    assert parse(podLabels=labels, backup={"podLabels": labels}).pod_labels == labels


def test_annotations_have_valid_keys_and_a_bounded_size():
    assert "not a valid annotation key" in refused({**ONE, "podAnnotations": {"bad key": "v"}})
    limit = spec_module.POD_ANNOTATIONS_MAX
    assert f"more than the {limit} allowed" in refused({**ONE, "podAnnotations": {"a": "x" * 300 * 1024}})
    assert parse(podAnnotations={"Prometheus.io/scrape": "true", "a": "x" * (limit - 1 - 20 - 4)})


@pytest.mark.parametrize("image", ["admin-api:1.0.0", "registry.example.com:5000/team/admin-api:1.0.0",
                                   "admin-api@sha256:" + "a" * 64, "[::1]:5000/admin-api", "a" * 255 + ":" + "t" * 128])
def test_image_references_registries_accept(image):
    assert parse(image=image).image == image


@pytest.mark.parametrize("image, complaint", [
    ("admin api:1.0.0", "not an image reference"),
    ("Admin-Api:1", "not an image reference"),
    ("admin-api:1.0.0 ", "not an image reference"),
    ("a" * 300, "repository name is 300 characters long"),
    ("registry.example.com/" + "a" * 250 + ":1", "repository name is 271 characters long"),
])
def test_image_references_that_cannot_be_pulled(image, complaint):
    assert complaint in refused({**ONE, "image": image})


def test_resources_are_quantities_and_requests_fit_the_limits():
    assert "is not a quantity" in refused({**ONE, "resources": {"requests": {"cpu": "lots"}}})
    # The default request (512Mi) above a lower limit the user set: the Deployment would be refused.
    assert "requests.memory 512Mi is more than limits.memory 256Mi" in refused(
        {**ONE, "resources": {"limits": {"memory": "256Mi"}}})
    assert parse(resources={"requests": {"memory": "128Mi"}, "limits": {"memory": "256Mi"}})


def test_every_problem_is_said_at_once():
    message = refused({"image": "a b", "replicas": 2, "env": [{"name": "REDIS_URL", "value": "x"}]}, "9x")
    assert all(part in message for part in ("metadata.name", "qdrant.host", "spec.image", "REDIS_URL"))
