"""The AdminApi spec as the operator reads it: the CRD's fields with the guide's defaults filled in.

The CRD defaults most fields already; parsing here again keeps the builders pure and total even for
objects written before a default existed, or partial overrides such as `readinessProbe: {periodSeconds: 7}`.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from kubernetes.utils import parse_quantity

# The guide's Kubernetes section.
DEFAULT_REPLICAS = 3
DEFAULT_PORT = 8001
LIVENESS_DEFAULTS = {"initialDelaySeconds": 30, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3}
READINESS_DEFAULTS = {"initialDelaySeconds": 10, "periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 2}
RESOURCES_DEFAULTS = {"requests": {"memory": "512Mi", "cpu": "500m"}, "limits": {"memory": "2Gi", "cpu": "2"}}


# What the operator sets in the service's environment itself, and from where: spec.env may not set these
# (the API server's server-side apply would refuse the Deployment for duplicate entries). The CRD says the
# same (tests/operator/test_spec.py keeps the three in step with the builders).
OPERATOR_ENV = {
    "DATABASE_URL": "spec.database.urlSecretRef",
    "REDIS_URL": "spec.redis",
    "LLM_ENDPOINT": "spec.llm.endpoint",
    "LLM_MODEL": "spec.llm.model",
    "LLM_API_KEY": "spec.llm.apiKeySecretRef",
    "CORS_ORIGINS": "spec.corsOrigins",
    "FORWARDED_ALLOW_IPS": "spec.trustedProxies",
    "MINIO_ENDPOINT": "spec.minio.endpoint",
    "MINIO_SECURE": "spec.minio.secure",
    "MINIO_BUCKET": "spec.minio.bucket",
    "MINIO_ACCESS_KEY": "spec.minio.accessKeySecretRef",
    "MINIO_SECRET_KEY": "spec.minio.secretKeySecretRef",
    "QDRANT_HOST": "spec.qdrant.host",
    "QDRANT_PORT": "spec.qdrant.port",
    "QDRANT_API_KEY": "spec.qdrant.apiKeySecretRef",
    "EMBEDDING_MODEL_ENDPOINT": "spec.embeddings.endpoint",
    "EMBEDDING_MODEL": "spec.embeddings.model",
    "BOOTSTRAP_ADMIN_USERNAME": "the generated Secret <name>-bootstrap-admin",
    "BOOTSTRAP_ADMIN_PASSWORD": "the generated Secret <name>-bootstrap-admin",
}

# Limits the CRD enforces at admission, repeated here for objects stored before it did (the API server
# does not re-validate what it already holds).
NAME_MAX = 63  # a DNS label: the Service's name and every label value derive from it
POD_ANNOTATIONS_MAX = 32768  # characters, keys and values: far below the API's 256 KiB whatever the encoding
IMAGE_REPOSITORY_MAX = 255  # what registries accept (distribution/reference)
ENV_MAX = 128
TRUSTED_PROXIES_MAX = 32
_DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
# An image reference as registries and the kubelet parse it (github.com/distribution/reference).
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*"
IMAGE_REFERENCE = (
    rf"^(?:(?:{_DOMAIN}|\[[a-fA-F0-9:]+\])(?::[0-9]+)?/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,})?$"
)


def _qualified_name_problem(key: str) -> str | None:
    """Why `key` is not a label or annotation key (prefix/name, as Kubernetes wants it), or None."""
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return "its prefix must be a DNS subdomain (lowercase letters, digits, '-' and '.')"
    if not name or len(name) > 63 or not _LABEL_NAME.fullmatch(name):
        return ("its name part must be at most 63 characters: letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit")
    return None


def _label_problems(field_: str, labels: Mapping[str, str]) -> Iterable[str]:
    for key, value in labels.items():
        if why := _qualified_name_problem(key):
            yield f"{field_}: {key!r} is not a valid label key: {why}"
        if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
            yield (f"{field_}[{key!r}]: {value[:80]!r} is not a valid label value: at most 63 characters, letters, "
                   "digits, '-', '_' or '.', starting and ending with a letter or digit")


def _trusted_proxy_problem(entry: str) -> str | None:
    """Why `entry` cannot be a trusted proxy (FORWARDED_ALLOW_IPS), or None: the CRD's rules, in Python."""
    every_peer = ("trusting every peer ('*', 0.0.0.0/0, ::/0) is refused: any client could set its own address "
                  "in X-Forwarded-For and escape the per-address login throttle")
    if entry == "*":
        return every_peer
    try:
        network = ipaddress.ip_network(entry, strict=False)  # an address is a /32 or /128
    except ValueError:
        return "not an IP address or a CIDR network, such as 10.0.0.5 or 10.0.0.0/8"
    if network.prefixlen == 0:
        return every_peer
    try:
        ipaddress.ip_network(entry)
    except ValueError:  # uvicorn reads 10.0.0.1/8 as a name, not a network: it would silently trust nobody
        return f"a network has no host bits set: {network}, not {entry}"
    return None


def image_repository(image: str) -> str:
    """The repository part of an image reference: without its tag and digest."""
    name = image.split("@", 1)[0]
    return name[:name.rindex(":")] if name.rfind(":") > name.rfind("/") else name


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
    trusted_proxies: tuple[str, ...] = ()
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
    embeddings_model: str | None = None
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
        embeddings = raw.get("embeddings") or {}
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
            trusted_proxies=tuple(raw.get("trustedProxies") or ()),
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
            embeddings_endpoint=embeddings.get("endpoint"),
            embeddings_model=embeddings.get("model"),
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
        problems = list(spec.problems())
        if not _DNS_LABEL.fullmatch(instance) or len(instance) > NAME_MAX:
            problems.insert(0, f"metadata.name {instance[:80]!r} must be a DNS label of at most {NAME_MAX} characters "
                               "(lowercase letters, digits and '-', starting with a letter): the Service and "
                               "every label derive from it")
        if problems:
            raise InvalidSpec("; ".join(problems))
        return spec

    def _resource_problems(self) -> Iterable[str]:
        # The guide's defaults fill in what the spec leaves out: a lower limit alone can contradict them.
        amounts: dict[str, dict[str, Any]] = {}
        for kind, values in self.resources.items():
            for resource, value in values.items():
                try:
                    amounts.setdefault(kind, {})[resource] = parse_quantity(value)
                except ValueError:
                    yield f"spec.resources.{kind}.{resource}: {str(value)[:40]!r} is not a quantity (such as 500m, 2, 512Mi)"
        requests, limits = amounts.get("requests", {}), amounts.get("limits", {})
        for resource in sorted(requests.keys() & limits.keys()):
            if requests[resource] > limits[resource]:
                yield (f"spec.resources: requests.{resource} {self.resources['requests'][resource]} is more than "
                       f"limits.{resource} {self.resources['limits'][resource]} (a request left out is the "
                       f"guide's default, {RESOURCES_DEFAULTS['requests'].get(resource, 'none')})")

    @property
    def backup_target(self) -> bool:
        """Whether the object storage a backup goes to is fully configured."""
        return bool(self.minio_endpoint and self.minio_bucket and self.minio_access_key and self.minio_secret_key)

    def problems(self) -> Iterable[str]:
        """What would deploy broken: what the schema cannot express, and what it refuses (for old objects)."""
        if self.replicas > 1 and not self.qdrant_host:
            yield (f"replicas is {self.replicas} but spec.qdrant.host is not set: the embedded Qdrant store "
                   "cannot be shared by several pods; set spec.qdrant.host or use replicas: 1")
        if not re.match(IMAGE_REFERENCE, self.image):
            yield (f"spec.image {self.image[:80]!r} is not an image reference such as "
                   "registry.example.com/admin-api:1.0.0 (no spaces or uppercase in the repository path)")
        elif len(repository := image_repository(self.image)) > IMAGE_REPOSITORY_MAX:
            yield (f"spec.image: the repository name is {len(repository)} characters long; registries accept "
                   f"at most {IMAGE_REPOSITORY_MAX}")
        yield from _label_problems("spec.podLabels", self.pod_labels)
        yield from _label_problems("spec.backup.podLabels", self.backup_pod_labels)
        for key in self.pod_annotations:
            if why := _qualified_name_problem(key.lower()):
                yield f"spec.podAnnotations: {key[:80]!r} is not a valid annotation key: {why}"
        size = sum(len(k) + len(v) for k, v in self.pod_annotations.items())
        if size > POD_ANNOTATIONS_MAX:
            yield (f"spec.podAnnotations are {size} characters in all (keys and values), more than the "
                   f"{POD_ANNOTATIONS_MAX} allowed")
        yield from self._resource_problems()
        # Trusting a wrong proxy lets clients choose their address: never deployed unchecked.
        if len(self.trusted_proxies) > TRUSTED_PROXIES_MAX:
            yield f"spec.trustedProxies has {len(self.trusted_proxies)} entries; at most {TRUSTED_PROXIES_MAX} are allowed"
        for entry in self.trusted_proxies:
            if why := _trusted_proxy_problem(str(entry)):
                yield f"spec.trustedProxies: {str(entry)[:80]!r}: {why}"
        names = [e.get("name") for e in self.extra_env]
        if len(names) > ENV_MAX:
            yield f"spec.env has {len(names)} entries; at most {ENV_MAX} are allowed"
        for name in sorted({n for n in names if n in OPERATOR_ENV}):
            yield f"spec.env may not set {name}: the operator sets it from {OPERATOR_ENV[name]}"
        for name in sorted({n for n in names if names.count(n) > 1}):
            yield f"spec.env sets {name} more than once"
        for name in sorted({e.get("name") for e in self.extra_env if "value" in e and "valueFrom" in e}):
            yield f"spec.env {name}: set value or valueFrom, not both"
