"""The AdminApi spec as the operator reads it: the CRD's fields with the guide's defaults filled in.

The CRD defaults most fields already; parsing here again keeps the builders pure and total even for
objects written before a default existed, or partial overrides such as `readinessProbe: {periodSeconds: 7}`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

# The guide's Kubernetes section.
DEFAULT_REPLICAS = 3
DEFAULT_PORT = 8001
LIVENESS_DEFAULTS = {"initialDelaySeconds": 30, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3}
READINESS_DEFAULTS = {"initialDelaySeconds": 10, "periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 2}
RESOURCES_DEFAULTS = {"requests": {"memory": "512Mi", "cpu": "500m"}, "limits": {"memory": "2Gi", "cpu": "2"}}


class InvalidSpec(ValueError):
    """The spec passed the CRD schema but cannot be deployed as asked (said in the status)."""


@dataclass(frozen=True)
class SecretRef:
    name: str
    key: str

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> SecretRef | None:
        return cls(name=raw["name"], key=raw["key"]) if raw else None


@dataclass(frozen=True)
class AdminApiSpec:
    image: str
    replicas: int = DEFAULT_REPLICAS
    port: int = DEFAULT_PORT
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    service_type: str = "ClusterIP"
    service_port: int = DEFAULT_PORT
    resources: Mapping[str, Any] = field(default_factory=lambda: RESOURCES_DEFAULTS)
    liveness: Mapping[str, int] = field(default_factory=lambda: LIVENESS_DEFAULTS)
    readiness: Mapping[str, int] = field(default_factory=lambda: READINESS_DEFAULTS)
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    pod_annotations: Mapping[str, str] = field(default_factory=dict)
    extra_env: tuple[Mapping[str, Any], ...] = ()
    cors_origins: tuple[str, ...] = ()
    database_url: SecretRef | None = None
    redis_url: str | None = None
    redis_url_ref: SecretRef | None = None
    minio_endpoint: str | None = None
    minio_bucket: str | None = None
    minio_secure: bool = False
    minio_access_key: SecretRef | None = None
    minio_secret_key: SecretRef | None = None
    qdrant_host: str | None = None
    qdrant_port: int = 6333
    qdrant_api_key: SecretRef | None = None
    embeddings_endpoint: str | None = None
    llm_endpoint: str | None = None
    llm_endpoint_ref: SecretRef | None = None
    llm_model: str | None = None
    llm_model_ref: SecretRef | None = None
    llm_api_key: SecretRef | None = None
    backup_enabled: bool = True
    backup_retention: int = 7
    backup_pod_labels: Mapping[str, str] = field(default_factory=dict)
    rollout_timeout_seconds: int = 300
    rollout_health_checks: bool = True
    rollout_health_check_url: str | None = None
    rollback_restore_database: bool = False

    @classmethod
    def parse(cls, raw: Mapping[str, Any], instance: str) -> AdminApiSpec:
        """Read a spec; what it leaves out comes from the instance Secret `<instance>-secrets`, as in the guide."""
        if not raw.get("image"):
            raise InvalidSpec("spec.image is required")
        service = raw.get("service") or {}
        database = raw.get("database") or {}
        redis = raw.get("redis") or {}
        minio = raw.get("minio") or {}
        qdrant = raw.get("qdrant") or {}
        llm = raw.get("llm") or {}
        backup = raw.get("backup") or {}
        rollout = raw.get("rollout") or {}
        resources = raw.get("resources") or {}
        secrets = f"{instance}-secrets"
        redis_literal = redis.get("url")
        spec = cls(
            image=raw["image"],
            replicas=int(raw.get("replicas", DEFAULT_REPLICAS)),
            port=int(raw.get("port", DEFAULT_PORT)),
            image_pull_policy=raw.get("imagePullPolicy", "IfNotPresent"),
            image_pull_secrets=tuple(raw.get("imagePullSecrets") or ()),
            service_type=service.get("type", "ClusterIP"),
            service_port=int(service.get("port", DEFAULT_PORT)),
            resources={
                "requests": {**RESOURCES_DEFAULTS["requests"], **(resources.get("requests") or {})},
                "limits": {**RESOURCES_DEFAULTS["limits"], **(resources.get("limits") or {})},
            },
            liveness={**LIVENESS_DEFAULTS, **(raw.get("livenessProbe") or {})},
            readiness={**READINESS_DEFAULTS, **(raw.get("readinessProbe") or {})},
            pod_labels=dict(raw.get("podLabels") or {}),
            pod_annotations=dict(raw.get("podAnnotations") or {}),
            extra_env=tuple(raw.get("env") or ()),
            cors_origins=tuple(raw.get("corsOrigins") or ()),
            database_url=SecretRef.parse(database.get("urlSecretRef")) or SecretRef(secrets, "database-url"),
            redis_url=redis_literal,
            redis_url_ref=None if redis_literal else (
                SecretRef.parse(redis.get("urlSecretRef")) or SecretRef(secrets, "redis-url")),
            minio_endpoint=minio.get("endpoint"),
            minio_bucket=minio.get("bucket"),
            minio_secure=bool(minio.get("secure", False)),
            minio_access_key=SecretRef.parse(minio.get("accessKeySecretRef")),
            minio_secret_key=SecretRef.parse(minio.get("secretKeySecretRef")),
            qdrant_host=qdrant.get("host"),
            qdrant_port=int(qdrant.get("port", 6333)),
            qdrant_api_key=SecretRef.parse(qdrant.get("apiKeySecretRef")),
            embeddings_endpoint=(raw.get("embeddings") or {}).get("endpoint"),
            llm_endpoint=llm.get("endpoint"),
            llm_endpoint_ref=None if llm.get("endpoint") else SecretRef(secrets, "llm-endpoint"),
            llm_model=llm.get("model"),
            llm_model_ref=None if llm.get("model") else SecretRef(secrets, "llm-model"),
            llm_api_key=SecretRef.parse(llm.get("apiKeySecretRef")),
            backup_enabled=bool(backup.get("enabled", True)),
            backup_retention=int(backup.get("retention", 7)),
            backup_pod_labels=dict(backup.get("podLabels") or {}),
            rollout_timeout_seconds=int(rollout.get("timeoutSeconds", 300)),
            rollout_health_checks=bool(rollout.get("healthChecks", True)),
            rollout_health_check_url=rollout.get("healthCheckURL"),
            rollback_restore_database=bool((raw.get("rollback") or {}).get("restoreDatabase", False)),
        )
        spec.check()
        return spec

    @property
    def backup_target(self) -> bool:
        """Whether the object storage a backup goes to is fully configured."""
        return bool(self.minio_endpoint and self.minio_bucket and self.minio_access_key and self.minio_secret_key)

    def check(self) -> None:
        """Refuse what the schema cannot express but would deploy broken."""
        if self.replicas > 1 and not self.qdrant_host:
            raise InvalidSpec(
                f"replicas is {self.replicas} but spec.qdrant.host is not set: the embedded Qdrant store "
                "cannot be shared by several pods; set spec.qdrant.host or use replicas: 1"
            )
        reserved = {"DATABASE_URL", "REDIS_URL"} & {e.get("name") for e in self.extra_env}
        if reserved:
            raise InvalidSpec(f"spec.env may not set {', '.join(sorted(reserved))}: use spec.database / spec.redis")
