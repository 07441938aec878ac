"""Pure builders: an AdminApi spec in, Kubernetes objects (plain dicts) out. No I/O here.

Every object carries the instance labels and a controller ownerReference to its AdminApi, so deleting the
AdminApi garbage-collects it. The pod meets the Pod Security Standards "restricted" profile.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from . import FIELD_MANAGER, GROUP, KIND, VERSION
from .spec import AdminApiSpec, SecretRef

APP_NAME = "admin-api"
CONTAINER_NAME = "admin-api"
RUN_AS_USER = 10001  # the uid Dockerfile.service creates
TEMPLATE_HASH_ANNOTATION = f"{GROUP}/template-hash"
APPLIED_HASH_ANNOTATION = f"{GROUP}/applied-hash"  # what we last applied: tells a removed field from a default
TEMPLATE_HASH_LABEL = f"{GROUP}/template-hash"  # on every API pod: which template it runs
ATTEMPT_LABEL = f"{GROUP}/attempt"  # on every Job and its pods: the rollout attempt it belongs to
HEALTH_PATHS = ("/health", "/health/db", "/health/ready", "/health/live")
POD_HEALTH_PATHS = ("/health/ready", "/health/live")
NAME_LIMIT = 63  # DNS label, and label values: Job names become the job-name label of their pods


def fit(name: str, limit: int = NAME_LIMIT) -> str:
    """`name` if it fits, else cut and suffixed with a hash of the whole: stable, unique, valid."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:limit - len(digest) - 1].rstrip('-.')}-{digest}"


@dataclass(frozen=True)
class Owner:
    """The AdminApi an object belongs to."""

    name: str
    namespace: str
    uid: str

    @classmethod
    def from_body(cls, body: Any) -> Owner:
        meta = body["metadata"]
        return cls(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def object_name(instance: str) -> str:
    """The Deployment's, Service's and PDB's name."""
    return fit(instance)


def selector_labels(instance: str) -> dict[str, str]:
    """The Deployment's selector (immutable, so it stays what it always was): every API pod of the instance.

    Job pods never carry `app.kubernetes.io/name: admin-api`, so nothing that selects API pods selects them.
    """
    return {"app.kubernetes.io/name": APP_NAME, "app.kubernetes.io/instance": fit(instance)}


def api_pod_labels(instance: str) -> dict[str, str]:
    """What the Service, the PodDisruptionBudget and the anti-affinity select: API pods only."""
    return {**selector_labels(instance), "app.kubernetes.io/component": "api"}


def instance_labels(instance: str, component: str = "api") -> dict[str, str]:
    return {
        **selector_labels(instance),
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": FIELD_MANAGER,
    }


def job_pod_labels(instance: str, component: str, attempt: str) -> dict[str, str]:
    """A Job's pods: the instance and the attempt, but none of the API's selector labels."""
    return {
        "app.kubernetes.io/part-of": APP_NAME,
        "app.kubernetes.io/instance": fit(instance),
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": FIELD_MANAGER,
        ATTEMPT_LABEL: attempt,
    }


def _metadata(owner: Owner, name: str, component: str = "api") -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": instance_labels(owner.name, component),
        "ownerReferences": [owner.reference()],
    }


def bootstrap_secret_name(instance: str) -> str:
    """The operator-generated Secret with the first admin's credentials."""
    return fit(f"{instance}-bootstrap-admin", 253)


# --- environment -----------------------------------------------------------------------------------

def _from_secret(name: str, ref: SecretRef) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def _literal(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def _value_or_ref(name: str, value: str | None, ref: SecretRef | None) -> list[dict[str, Any]]:
    if value is not None:
        return [_literal(name, value)]
    if ref is not None:
        return [_from_secret(name, ref)]
    return []


def service_env(spec: AdminApiSpec) -> list[dict[str, Any]]:
    """The service's environment, by the guide's variable names; secrets only by reference."""
    env = [_from_secret("DATABASE_URL", spec.database_url)] if spec.database_url else []
    env += _value_or_ref("REDIS_URL", spec.redis_url, spec.redis_url_ref)
    env += _value_or_ref("LLM_ENDPOINT", spec.llm_endpoint, spec.llm_endpoint_ref)
    env += _value_or_ref("LLM_MODEL", spec.llm_model, spec.llm_model_ref)
    env += _value_or_ref("LLM_API_KEY", None, spec.llm_api_key)
    if spec.cors_origins:
        env.append(_literal("CORS_ORIGINS", ",".join(spec.cors_origins)))
    if spec.trusted_proxies:  # absent: the service believes no X-Forwarded-For (uvicorn's syntax, comma-joined)
        env.append(_literal("FORWARDED_ALLOW_IPS", ",".join(spec.trusted_proxies)))
    if spec.minio_endpoint:
        env.append(_literal("MINIO_ENDPOINT", spec.minio_endpoint))
        env.append(_literal("MINIO_SECURE", "true" if spec.minio_secure else "false"))
        env += _value_or_ref("MINIO_BUCKET", spec.minio_bucket, None)
        env += _value_or_ref("MINIO_ACCESS_KEY", None, spec.minio_access_key)
        env += _value_or_ref("MINIO_SECRET_KEY", None, spec.minio_secret_key)
    if spec.qdrant_host:
        env.append(_literal("QDRANT_HOST", spec.qdrant_host))
        env.append(_literal("QDRANT_PORT", str(spec.qdrant_port)))
        env += _value_or_ref("QDRANT_API_KEY", None, spec.qdrant_api_key)
    env += _value_or_ref("EMBEDDING_MODEL_ENDPOINT", spec.embeddings_endpoint, None)
    env += _value_or_ref("EMBEDDING_MODEL", spec.embeddings_model, None)  # documents need both
    return env + [dict(e) for e in spec.extra_env]


# --- pod ---------------------------------------------------------------------------------------------

RESTRICTED_CONTAINER_SECURITY = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}

RESTRICTED_POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": RUN_AS_USER,
    "runAsGroup": RUN_AS_USER,
    "fsGroup": RUN_AS_USER,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _probe(path: str, timing: dict[str, int]) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}, **timing}


def _container(spec: AdminApiSpec, name: str, args: list[str], env: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "args": args,
        "env": env,
        "securityContext": RESTRICTED_CONTAINER_SECURITY,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def migrate_env(instance: str, spec: AdminApiSpec) -> list[dict[str, Any]]:
    """`admin-api migrate` also creates the first admin, from the generated Secret."""
    secret = bootstrap_secret_name(instance)
    return service_env(spec) + [
        _from_secret("BOOTSTRAP_ADMIN_USERNAME", SecretRef(secret, "username")),
        _from_secret("BOOTSTRAP_ADMIN_PASSWORD", SecretRef(secret, "password")),
    ]


def pod_template(instance: str, spec: AdminApiSpec) -> dict[str, Any]:
    """The Deployment's pod template. A change of it is a rollout; replicas are not part of it."""
    env = service_env(spec)
    # On a first install (and a no-op later: the migration Job of a rollout has run before any pod changes).
    migrate = _container(spec, "migrate", ["migrate"], migrate_env(instance, spec))
    api = {
        **_container(spec, CONTAINER_NAME, ["serve", "--host", "0.0.0.0", "--port", str(spec.port)], env),
        "ports": [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}],
        "livenessProbe": _probe("/health/live", dict(spec.liveness)),
        "readinessProbe": _probe("/health/ready", dict(spec.readiness)),
        "resources": {k: dict(v) for k, v in spec.resources.items()},
    }
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,  # the service never talks to the Kubernetes API
        "enableServiceLinks": False,
        "securityContext": RESTRICTED_POD_SECURITY,
        "terminationGracePeriodSeconds": 30,
        "initContainers": [migrate],
        "containers": [api],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
    }
    if spec.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in spec.image_pull_secrets]
    # Spread replicas over nodes when the cluster can, without refusing to schedule when it cannot. Always
    # there (harmless for one replica): scaling must never change the template.
    pod_spec["affinity"] = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
        "weight": 100,
        "podAffinityTerm": {
            "topologyKey": "kubernetes.io/hostname",
            "labelSelector": {"matchLabels": api_pod_labels(instance)},
        },
    }]}}
    template = {
        "metadata": {
            "labels": {**spec.pod_labels, **instance_labels(instance)},
            "annotations": dict(spec.pod_annotations),
        },
        "spec": pod_spec,
    }
    # Each pod says which template it runs, so the gate and the status count the new template's pods only.
    template["metadata"]["labels"][TEMPLATE_HASH_LABEL] = template_hash(template)
    return template


def _digest(obj: Any, length: int = 16) -> str:
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]


def template_hash(template: dict[str, Any]) -> str:
    """A short, stable fingerprint of a pod template (without its own hash label): what a rollout is keyed by."""
    labels = {k: v for k, v in (template.get("metadata") or {}).get("labels", {}).items() if k != TEMPLATE_HASH_LABEL}
    return _digest({**template, "metadata": {**template.get("metadata", {}), "labels": labels}})


def applied_hash(obj: dict[str, Any]) -> str | None:
    """The fingerprint `with_applied_hash` put on `obj` (None: none)."""
    return (obj["metadata"].get("annotations") or {}).get(APPLIED_HASH_ANNOTATION)


def with_applied_hash(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` annotated with a fingerprint of itself: a field we stopped setting shows up as a changed hash."""
    annotations = {k: v for k, v in (obj["metadata"].get("annotations") or {}).items() if k != APPLIED_HASH_ANNOTATION}
    bare = {**obj, "metadata": {**obj["metadata"], "annotations": annotations}}
    return {**obj, "metadata": {**obj["metadata"], "annotations": {**annotations, APPLIED_HASH_ANNOTATION: _digest(bare)}}}


# --- workload and networking -------------------------------------------------------------------------

def deployment(owner: Owner, spec: AdminApiSpec, template: dict[str, Any], replicas: int | None = None) -> dict[str, Any]:
    """The Deployment running `template`, which is the spec's own or, after a rollback, the last good one."""
    meta = _metadata(owner, object_name(owner.name))
    meta["annotations"] = {TEMPLATE_HASH_ANNOTATION: template_hash(template)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": spec.replicas if replicas is None else replicas,
            "selector": {"matchLabels": selector_labels(owner.name)},
            # Old pods keep serving until new ones are ready: a bad version never takes capacity away.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "progressDeadlineSeconds": spec.rollout_timeout_seconds,
            "revisionHistoryLimit": 10,
            "template": template,
        },
    }


def service(owner: Owner, spec: AdminApiSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(owner, object_name(owner.name)),
        "spec": {
            "type": spec.service_type,
            "selector": api_pod_labels(owner.name),
            "ports": [{"name": "http", "protocol": "TCP", "port": spec.service_port, "targetPort": "http"}],
        },
    }


def pod_disruption_budget(owner: Owner, spec: AdminApiSpec) -> dict[str, Any]:
    """Voluntary evictions take one API pod at a time. Whatever the replicas (one pod may always go: drains are
    never blocked), so scaling neither creates nor deletes it."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(owner, object_name(owner.name)),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": api_pod_labels(owner.name)}},
    }


def bootstrap_secret(owner: Owner, username: str, password: str) -> dict[str, Any]:
    """The first admin's credentials, generated once by the operator (the caller supplies the randomness)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(owner, bootstrap_secret_name(owner.name), component="credentials"),
        "type": "kubernetes.io/basic-auth",
        "stringData": {"username": username, "password": password},
    }


def health_base_url(owner: Owner, spec: AdminApiSpec) -> str:
    """Where the rollout gate checks the health endpoints: the Service, unless overridden."""
    if spec.rollout_health_check_url:
        return spec.rollout_health_check_url.rstrip("/")
    return f"http://{object_name(owner.name)}.{owner.namespace}.svc:{spec.service_port}"


# --- the Jobs of a rollout attempt: backup, migration, restore --------------------------------------

def _job(owner: Owner, spec: AdminApiSpec, image: str, component: str, attempt: str, args: list[str],
         env: list[dict[str, Any]], name_suffix: str = "") -> dict[str, Any]:
    """A one-shot Job of one rollout attempt running the admin-api CLI: `image` with `spec`'s settings."""
    container = {
        **_container(spec, component, args, env),
        "image": image,
        "resources": {k: dict(v) for k, v in spec.resources.items()},
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": RESTRICTED_POD_SECURITY,
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "4Gi"}}],
    }
    if spec.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in spec.image_pull_secrets]
    metadata = _metadata(owner, job_name(owner.name, component, attempt, name_suffix), component)
    metadata["labels"] = {**metadata["labels"], ATTEMPT_LABEL: attempt}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": 1,
            "activeDeadlineSeconds": 3600,
            "ttlSecondsAfterFinished": 7 * 24 * 3600,
            "template": {
                "metadata": {"labels": {**_extra_job_pod_labels(spec), **job_pod_labels(owner.name, component, attempt)}},
                "spec": pod_spec,
            },
        },
    }


def _extra_job_pod_labels(spec: AdminApiSpec) -> dict[str, str]:
    # Never the app.kubernetes.io/* ones: they would make the Service or the PDB select Job pods.
    return {k: v for k, v in spec.backup_pod_labels.items() if not k.startswith("app.kubernetes.io/")}


def job_name(instance: str, component: str, attempt: str, suffix: str = "") -> str:
    return fit(f"{instance}-{component}-{attempt}{suffix}")


def backup_key(namespace: str, instance: str, image: str, attempt: str, at: str) -> str:
    """Object name of a pre-rollout dump: namespace, instance, time, the version being left, the attempt."""
    tag = image.rsplit("/", 1)[-1].partition(":")[2] or "untagged"
    stamp = at.replace("-", "").replace(":", "")
    return f"{namespace}/{instance}/{stamp}-{tag}-{attempt}.dump"


def backup_job(owner: Owner, spec: AdminApiSpec, image: str, attempt: str, key: str,
               settings: AdminApiSpec | None = None) -> dict[str, Any]:
    """The last good version (`image`, and its `settings`: the database it used) dumps the database."""
    args = ["backup", "--namespace", owner.namespace, "--instance", owner.name, "--key", key,
            "--retention", str(spec.backup_retention)]
    return _job(owner, spec, image, "backup", attempt, args, service_env(settings or spec))


def migration_job(owner: Owner, spec: AdminApiSpec, attempt: str) -> dict[str, Any]:
    """The new version's `admin-api migrate` (transactional): with the new image and the new settings."""
    return _job(owner, spec, spec.image, "migrate", attempt, ["migrate"], migrate_env(owner.name, spec))


def restore_job(owner: Owner, spec: AdminApiSpec, image: str, attempt: str, location: str,
                settings: AdminApiSpec | None = None, round_: int = 1) -> dict[str, Any]:
    """The last good version restores the attempt's own backup into the database it used."""
    suffix = "" if round_ == 1 else f"-r{round_}"
    return _job(owner, spec, image, "restore", attempt, ["restore", location], service_env(settings or spec), suffix)
