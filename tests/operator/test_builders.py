"""The builders are pure: spec in, objects out. Every object must be valid Kubernetes 1.35 and restricted."""
import copy

import kubernetes_validate
import pytest

from adminapi_operator import builders
from adminapi_operator.spec import AdminApiSpec

from .conftest import GUIDE_SPEC

K8S_VERSION = "1.35"
MINIO = {"endpoint": "minio:9000", "bucket": "backups", "accessKeySecretRef": {"name": "s3", "key": "a"},
         "secretKeySecretRef": {"name": "s3", "key": "s"}}


def all_objects(owner, spec):
    template = builders.pod_template(owner.name, spec)
    objs = [
        builders.deployment(owner, spec, template),
        builders.service(owner, spec),
        builders.bootstrap_secret(owner, "admin", "generated"),
        builders.backup_job(owner, spec, "admin-api:0.9.0", "a" * 16, "k/key.dump"),
        builders.restore_job(owner, spec, "admin-api:0.9.0", "a" * 16, "s3://b/k/key.dump"),
    ]
    pdb = builders.pod_disruption_budget(owner, spec)
    return objs + ([pdb] if pdb else [])


def pod_specs(obj):
    if obj["kind"] in ("Deployment", "Job"):
        yield obj["spec"]["template"]["spec"]


@pytest.mark.parametrize("raw", [
    GUIDE_SPEC,
    {"image": "admin-api:2", "replicas": 1},
    {**GUIDE_SPEC, "replicas": 5, "imagePullSecrets": ["regcred"], "corsOrigins": ["https://chat.example.com"],
     "redis": {"url": "redis://redis:6379"}, "llm": {"endpoint": "http://vllm:8000/v1", "model": "qwen",
     "apiKeySecretRef": {"name": "llm", "key": "key"}}, "minio": {"endpoint": "minio:9000", "bucket": "docs",
     "accessKeySecretRef": {"name": "s3", "key": "a"}, "secretKeySecretRef": {"name": "s3", "key": "s"}},
     "env": [{"name": "LOG_LEVEL", "value": "DEBUG"}], "service": {"type": "NodePort"}},
])
def test_every_object_is_valid_kubernetes(owner, raw):
    for obj in all_objects(owner, AdminApiSpec.parse(raw, owner.name)):
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_validation_would_catch_a_broken_object(owner):
    """The check above can fail: a misspelt field is refused."""
    broken = builders.service(owner, AdminApiSpec.parse(GUIDE_SPEC, owner.name))
    broken["spec"]["portz"] = broken["spec"].pop("ports")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_pods_meet_the_restricted_profile(owner):
    for obj in all_objects(owner, AdminApiSpec.parse(GUIDE_SPEC, owner.name)):
        for pod in pod_specs(obj):
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            assert pod["automountServiceAccountToken"] is False
            for volume in pod["volumes"]:
                assert set(volume) <= {"name", "emptyDir", "configMap", "secret", "projected",
                                       "downwardAPI", "persistentVolumeClaim", "ephemeral", "csi"}
            for c in pod.get("initContainers", []) + pod["containers"]:
                sc = c["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False
                assert sc["capabilities"] == {"drop": ["ALL"]}
                assert sc["readOnlyRootFilesystem"] is True
                assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]


def test_deployment_is_the_guides(owner):
    spec = AdminApiSpec.parse(GUIDE_SPEC, owner.name)
    dep = builders.deployment(owner, spec, builders.pod_template(owner.name, spec))
    assert dep["spec"]["replicas"] == 3
    api = dep["spec"]["template"]["spec"]["containers"][0]
    assert api["image"] == GUIDE_SPEC["image"]
    assert api["ports"] == [{"name": "http", "containerPort": 8001, "protocol": "TCP"}]
    assert api["livenessProbe"] == {"httpGet": {"path": "/health/live", "port": "http"},
                                    "initialDelaySeconds": 30, "periodSeconds": 10, "timeoutSeconds": 5,
                                    "failureThreshold": 3}
    assert api["readinessProbe"] == {"httpGet": {"path": "/health/ready", "port": "http"},
                                     "initialDelaySeconds": 10, "periodSeconds": 5, "timeoutSeconds": 3,
                                     "failureThreshold": 2}
    assert api["resources"] == {"requests": {"memory": "512Mi", "cpu": "500m"},
                                "limits": {"memory": "2Gi", "cpu": "2"}}
    env = {e["name"]: e for e in api["env"]}
    # The guide's secret and keys, by reference only.
    assert env["DATABASE_URL"]["valueFrom"] == {"secretKeyRef": {"name": "admin-api-secrets", "key": "database-url"}}
    assert env["REDIS_URL"]["valueFrom"] == {"secretKeyRef": {"name": "admin-api-secrets", "key": "redis-url"}}
    assert env["QDRANT_HOST"] == {"name": "QDRANT_HOST", "value": "qdrant"}
    assert dep["metadata"]["ownerReferences"][0]["uid"] == owner.uid
    assert dep["metadata"]["ownerReferences"][0]["controller"] is True
    migrate = dep["spec"]["template"]["spec"]["initContainers"][0]
    assert migrate["args"] == ["migrate"]
    assert {"name": "BOOTSTRAP_ADMIN_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "admin-api-bootstrap-admin", "key": "password"}}} in migrate["env"]


def test_service_is_the_guides(owner):
    svc = builders.service(owner, AdminApiSpec.parse(GUIDE_SPEC, owner.name))
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"] == [{"name": "http", "protocol": "TCP", "port": 8001, "targetPort": "http"}]
    assert svc["spec"]["selector"] == {"app.kubernetes.io/name": "admin-api", "app.kubernetes.io/instance": "admin-api"}


def test_overrides_are_honoured(owner):
    raw = {**GUIDE_SPEC, "replicas": 2, "port": 9000, "readinessProbe": {"periodSeconds": 7},
           "resources": {"limits": {"memory": "1Gi"}}, "podLabels": {"team": "chat"},
           "podAnnotations": {"note": "x"}}
    spec = AdminApiSpec.parse(raw, owner.name)
    template = builders.pod_template(owner.name, spec)
    api = template["spec"]["containers"][0]
    assert api["readinessProbe"]["periodSeconds"] == 7
    assert api["readinessProbe"]["failureThreshold"] == 2  # the rest keeps the guide's values
    assert api["resources"]["limits"] == {"memory": "1Gi", "cpu": "2"}
    assert api["ports"][0]["containerPort"] == 9000
    assert template["metadata"]["labels"]["team"] == "chat"
    assert template["metadata"]["annotations"] == {"note": "x"}


def test_single_replica_has_no_pdb_and_no_anti_affinity(owner):
    spec = AdminApiSpec.parse({"image": "admin-api:1", "replicas": 1}, owner.name)
    assert builders.pod_disruption_budget(owner, spec) is None
    assert "affinity" not in builders.pod_template(owner.name, spec)["spec"]
    several = AdminApiSpec.parse(GUIDE_SPEC, owner.name)
    assert builders.pod_disruption_budget(owner, several)["spec"]["maxUnavailable"] == 1
    assert "podAntiAffinity" in builders.pod_template(owner.name, several)["spec"]["affinity"]


def test_template_hash_follows_the_template(owner):
    spec = AdminApiSpec.parse(GUIDE_SPEC, owner.name)
    a = builders.pod_template(owner.name, spec)
    assert builders.template_hash(a) == builders.template_hash(copy.deepcopy(a))
    b = builders.pod_template(owner.name, AdminApiSpec.parse({**GUIDE_SPEC, "image": "x:2"}, owner.name))
    assert builders.template_hash(a) != builders.template_hash(b)


def test_no_secret_value_is_ever_literal(owner):
    spec = AdminApiSpec.parse({**GUIDE_SPEC, "llm": {"endpoint": "http://vllm/v1", "model": "m",
                                                     "apiKeySecretRef": {"name": "s", "key": "k"}}}, owner.name)
    env = {e["name"]: e for e in builders.service_env(spec)}
    for name in ("DATABASE_URL", "REDIS_URL", "LLM_API_KEY"):
        assert "value" not in env[name] and "secretKeyRef" in env[name]["valueFrom"]


def test_backup_job_uses_the_known_good_image_and_says_where(owner):
    spec = AdminApiSpec.parse({**GUIDE_SPEC, "image": "admin-api:2.0.0", "minio": MINIO,
                               "backup": {"podLabels": {"sim.aistreams.io/fail": "true"}}}, owner.name)
    key = builders.backup_key(owner.name, "admin-api:1.0.0", "0123456789abcdef", "2026-11-25T10:00:00Z")
    assert key == "admin-api/20261125T100000Z-1.0.0-01234567.dump"
    job = builders.backup_job(owner, spec, "admin-api:1.0.0", "0123456789abcdef", key)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "admin-api:1.0.0"  # the running version, not the one being rolled out
    env = {e["name"]: e for e in container["env"]}
    assert env["MINIO_BUCKET"]["value"] == "backups" and "secretKeyRef" in env["MINIO_SECRET_KEY"]["valueFrom"]
    assert container["args"][:5] == ["backup", "--instance", "admin-api", "--key", key]
    assert job["metadata"]["name"] == "admin-api-backup-0123456789"
    assert job["spec"]["template"]["metadata"]["labels"]["sim.aistreams.io/fail"] == "true"
