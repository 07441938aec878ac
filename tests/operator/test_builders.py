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
        builders.backup_job(owner, spec, "admin-api:0.9.0", "a" * 10 + "-1", "k/key.dump"),
        builders.migration_job(owner, spec, "a" * 10 + "-1"),
        builders.restore_job(owner, spec, "admin-api:0.9.0", "a" * 10 + "-1", "s3://b/k/key.dump"),
        builders.pod_disruption_budget(owner, spec),
    ]
    return objs


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
     "env": [{"name": "LOG_LEVEL", "value": "DEBUG"}], "service": {"type": "NodePort"},
     "trustedProxies": ["10.42.0.0/16", "fd00::/8"], "embeddings": {"endpoint": "http://e:8000/v1", "model": "bge"}},
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
    assert svc["spec"]["selector"] == {"app.kubernetes.io/name": "admin-api", "app.kubernetes.io/instance": "admin-api",
                                       "app.kubernetes.io/component": "api"}


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


def test_scaling_changes_neither_the_template_nor_the_set_of_objects(owner):
    """Issue 9: anti-affinity only for replicas > 1 made 1 -> 2 a template change (a rollout); the PDB came
    and went with the replicas (a DELETE of an absent PDB every reconcile)."""
    base = {**GUIDE_SPEC, "qdrant": {"host": "q"}}
    templates = {builders.template_hash(builders.pod_template(owner.name, AdminApiSpec.parse({**base, "replicas": n},
                                                                                           owner.name)))
                 for n in (0, 1, 2, 5)}
    assert len(templates) == 1
    for n in (0, 1, 3):
        pdb = builders.pod_disruption_budget(owner, AdminApiSpec.parse({**base, "replicas": n}, owner.name))
        assert pdb["spec"]["maxUnavailable"] == 1  # one pod may always go: drains are never blocked


def _selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_job_pods_are_selected_by_nothing_that_selects_api_pods(owner):
    """Issue 9: Job pods carried the API's selector labels, so the PDB counted them (disruptionsAllowed 0
    while a backup ran), and the Service and the anti-affinity selected them too."""
    spec = AdminApiSpec.parse({**GUIDE_SPEC, "minio": MINIO,
                               "backup": {"podLabels": {"app.kubernetes.io/name": "admin-api", "team": "x"}}},
                              owner.name)
    template = builders.pod_template(owner.name, spec)
    selectors = [
        builders.service(owner, spec)["spec"]["selector"],
        builders.pod_disruption_budget(owner, spec)["spec"]["selector"]["matchLabels"],
        template["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0][
            "podAffinityTerm"]["labelSelector"]["matchLabels"],
        builders.deployment(owner, spec, template)["spec"]["selector"]["matchLabels"],
    ]
    jobs = [builders.backup_job(owner, spec, "a:1", "h-1", "k"), builders.migration_job(owner, spec, "h-1"),
            builders.restore_job(owner, spec, "a:1", "h-1", "s3://b/k")]
    for selector in selectors:
        assert _selects(selector, template["metadata"]["labels"])
        for job in jobs:
            labels = job["spec"]["template"]["metadata"]["labels"]
            assert not _selects(selector, labels), (selector, labels)
            assert labels["aistreams.io/attempt"] == "h-1" and labels["team"] == "x"


@pytest.mark.parametrize("length", [1, 40, 46, 63])
def test_every_derived_name_and_label_fits(length):
    """Issue 11 item 2: a 63-character AdminApi name gave an 81-character backup Job name (its job-name label
    was refused) and names over about 45 characters broke rollouts."""
    name = ("a" * length)[:length]
    owner = builders.Owner(name=name, namespace="ns", uid="u")
    spec = AdminApiSpec.parse({**GUIDE_SPEC, "minio": MINIO}, name)
    attempt = "0123456789-12345"
    objs = all_objects(owner, spec) + [builders.restore_job(owner, spec, "a:1", attempt, "s3://b/k", round_=3),
                                       builders.backup_job(owner, spec, "a:1", attempt, "k")]
    names = set()
    for obj in objs:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        limit = 253 if obj["kind"] == "Secret" else 63
        assert len(obj["metadata"]["name"]) <= limit
        names.add(obj["metadata"]["name"])
        labels = [obj["metadata"]["labels"]]
        if "template" in obj.get("spec", {}):
            labels.append(obj["spec"]["template"]["metadata"]["labels"])
        for value in (v for group in labels for v in group.values()):
            assert len(value) <= 63
    assert len({o["metadata"]["name"] for o in objs if o["kind"] == "Job"}) == 5  # distinct Jobs stay distinct


def test_fit_is_stable_and_unique():
    long_a, long_b = "x" * 70 + "-backup-1", "x" * 70 + "-backup-2"
    assert builders.fit(long_a) == builders.fit(long_a) and len(builders.fit(long_a)) == 63
    assert builders.fit(long_a) != builders.fit(long_b)
    assert builders.fit("short") == "short"


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


def env_of(raw: dict, owner) -> dict:
    """The API container's environment, by name."""
    template = builders.pod_template(owner.name, AdminApiSpec.parse(raw, owner.name))
    return {e["name"]: e for e in template["spec"]["containers"][0]["env"]}


def test_trusted_proxies_are_forwarded_allow_ips(owner):
    env = env_of({**GUIDE_SPEC, "trustedProxies": ["10.42.0.0/16", "fd00::/8", "192.168.1.7"]}, owner)
    assert env["FORWARDED_ALLOW_IPS"] == {"name": "FORWARDED_ALLOW_IPS", "value": "10.42.0.0/16,fd00::/8,192.168.1.7"}
    # Unset: absent, so the service believes no X-Forwarded-For at all.
    assert "FORWARDED_ALLOW_IPS" not in env_of(GUIDE_SPEC, owner)
    assert "FORWARDED_ALLOW_IPS" not in env_of({**GUIDE_SPEC, "trustedProxies": []}, owner)


def test_the_embeddings_model_is_passed_with_its_endpoint(owner):
    """Documents need EMBEDDING_MODEL_ENDPOINT and EMBEDDING_MODEL both: the endpoint alone kept them off."""
    env = env_of({**GUIDE_SPEC, "embeddings": {"endpoint": "http://e:8000/v1", "model": "BAAI/bge-small-en-v1.5"}}, owner)
    assert env["EMBEDDING_MODEL_ENDPOINT"] == {"name": "EMBEDDING_MODEL_ENDPOINT", "value": "http://e:8000/v1"}
    assert env["EMBEDDING_MODEL"] == {"name": "EMBEDDING_MODEL", "value": "BAAI/bge-small-en-v1.5"}
    assert "EMBEDDING_MODEL" not in env_of({**GUIDE_SPEC, "embeddings": {"endpoint": "http://e:8000/v1"}}, owner)


def test_backup_job_uses_the_known_good_image_and_settings_and_says_where(owner):
    """Issue 9: backup and restore used the *new* spec's settings, so a rollout that changed the database
    reference backed up (and restored) the wrong database."""
    old = AdminApiSpec.parse({**GUIDE_SPEC, "image": "admin-api:1.0.0", "minio": MINIO,
                              "database": {"urlSecretRef": {"name": "old-db", "key": "url"}}}, owner.name)
    spec = AdminApiSpec.parse({**GUIDE_SPEC, "image": "admin-api:2.0.0", "minio": MINIO,
                               "database": {"urlSecretRef": {"name": "new-db", "key": "url"}},
                               "backup": {"podLabels": {"sim.aistreams.io/fail": "true"}}}, owner.name)
    key = builders.backup_key("ai-streams", owner.name, "admin-api:1.0.0", "0123456789-3", "2026-11-25T10:00:00Z")
    assert key == "ai-streams/admin-api/20261125T100000Z-1.0.0-0123456789-3.dump"
    job = builders.backup_job(owner, spec, "admin-api:1.0.0", "0123456789-3", key, old)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "admin-api:1.0.0"  # the running version, not the one being rolled out
    env = {e["name"]: e for e in container["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "old-db"  # the database it ran on
    assert env["MINIO_BUCKET"]["value"] == "backups" and "secretKeyRef" in env["MINIO_SECRET_KEY"]["valueFrom"]
    assert container["args"] == ["backup", "--namespace", "ai-streams", "--instance", "admin-api", "--key", key,
                                 "--retention", "7"]
    assert job["metadata"]["name"] == "admin-api-backup-0123456789-3"
    assert job["metadata"]["labels"]["aistreams.io/attempt"] == "0123456789-3"
    assert job["spec"]["template"]["metadata"]["labels"]["sim.aistreams.io/fail"] == "true"
    restore = builders.restore_job(owner, spec, "admin-api:1.0.0", "0123456789-3", f"s3://backups/{key}", old)
    env = {e["name"]: e for e in restore["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "old-db"


def test_migration_job_runs_the_new_version_with_the_new_settings(owner):
    spec = AdminApiSpec.parse({**GUIDE_SPEC, "image": "admin-api:2.0.0",
                               "database": {"urlSecretRef": {"name": "new-db", "key": "url"}}}, owner.name)
    job = builders.migration_job(owner, spec, "0123456789-3")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "admin-api:2.0.0" and container["args"] == ["migrate"]
    env = {e["name"]: e for e in container["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "new-db"
    assert "BOOTSTRAP_ADMIN_PASSWORD" in env
    assert job["metadata"]["name"] == "admin-api-migrate-0123456789-3"
