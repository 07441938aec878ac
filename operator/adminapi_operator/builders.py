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
HEALTH_PATHS = ("/health", "/health/db", "/health/ready", "/health/live")


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


def selector_labels(instance: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": APP_NAME, "app.kubernetes.io/instance": instance}


def instance_labels(instance: str, component: str = "api") -> dict[str, str]:
    return {
        **selector_labels(instance),
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": FIELD_MANAGER,
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
    return f"{instance}-bootstrap-admin"


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


def pod_template(instance: str, spec: AdminApiSpec) -> dict[str, Any]:
    """The Deployment's pod template. A change of it is a rollout."""
    env = service_env(spec)
    bootstrap = SecretRef(bootstrap_secret_name(instance), "username"), SecretRef(bootstrap_secret_name(instance), "password")
    migrate = _container(spec, "migrate", ["migrate"], env + [
        _from_secret("BOOTSTRAP_ADMIN_USERNAME", bootstrap[0]),
        _from_secret("BOOTSTRAP_ADMIN_PASSWORD", bootstrap[1]),
    ])
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
    if spec.replicas > 1:
        # Spread replicas over nodes when the cluster can, without refusing to schedule when it cannot.
        pod_spec["affinity"] = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100,
            "podAffinityTerm": {
                "topologyKey": "kubernetes.io/hostname",
                "labelSelector": {"matchLabels": selector_labels(instance)},
            },
        }]}}
    return {
        "metadata": {
            "labels": {**spec.pod_labels, **instance_labels(instance)},
            "annotations": dict(spec.pod_annotations),
        },
        "spec": pod_spec,
    }


def template_hash(template: dict[str, Any]) -> str:
    """A short, stable fingerprint of a pod template: what a rollout is keyed by."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# --- workload and networking -------------------------------------------------------------------------

def deployment(owner: Owner, spec: AdminApiSpec, template: dict[str, Any]) -> dict[str, Any]:
    """The Deployment running `template`, which is the spec's own or, after a rollback, the last good one."""
    meta = _metadata(owner, owner.name)
    meta["annotations"] = {TEMPLATE_HASH_ANNOTATION: template_hash(template)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": spec.replicas,
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
        "metadata": _metadata(owner, owner.name),
        "spec": {
            "type": spec.service_type,
            "selector": selector_labels(owner.name),
            "ports": [{"name": "http", "protocol": "TCP", "port": spec.service_port, "targetPort": "http"}],
        },
    }


def pod_disruption_budget(owner: Owner, spec: AdminApiSpec) -> dict[str, Any] | None:
    """Voluntary evictions take one pod at a time; a single replica gets none (it would block node drains)."""
    if spec.replicas <= 1:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(owner, owner.name),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(owner.name)}},
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
    return f"http://{owner.name}.{owner.namespace}.svc:{spec.service_port}"


# --- database backup and restore jobs ----------------------------------------------------------------

def _job(owner: Owner, spec: AdminApiSpec, image: str, name: str, component: str, args: list[str]) -> dict[str, Any]:
    """A one-shot Job running the admin-api CLI: `image` (the known-good version) with the instance's settings."""
    container = {
        **_container(spec, component, args, service_env(spec)),
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
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(owner, name, component),
        "spec": {
            "backoffLimit": 1,
            "activeDeadlineSeconds": 3600,
            "ttlSecondsAfterFinished": 7 * 24 * 3600,
            "template": {
                "metadata": {"labels": {**spec.backup_pod_labels, **instance_labels(owner.name, component)}},
                "spec": pod_spec,
            },
        },
    }


def backup_key(instance: str, image: str, rollout_id: str, at: str) -> str:
    """Object name of a pre-rollout dump: says instance, time and version (the image tag being left)."""
    tag = image.rsplit("/", 1)[-1].partition(":")[2] or "untagged"
    stamp = at.replace("-", "").replace(":", "")
    return f"{instance}/{stamp}-{tag}-{rollout_id[:8]}.dump"


def backup_job(owner: Owner, spec: AdminApiSpec, image: str, rollout_id: str, key: str) -> dict[str, Any]:
    args = ["backup", "--instance", owner.name, "--key", key, "--retention", str(spec.backup_retention)]
    return _job(owner, spec, image, f"{owner.name}-backup-{rollout_id[:10]}", "backup", args)


def restore_job(owner: Owner, spec: AdminApiSpec, image: str, rollout_id: str, location: str) -> dict[str, Any]:
    return _job(owner, spec, image, f"{owner.name}-restore-{rollout_id[:10]}", "restore", ["restore", location])
