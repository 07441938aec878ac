import pytest

from adminapi_operator.spec import AdminApiSpec, InvalidSpec


def test_defaults_are_the_guides():
    spec = AdminApiSpec.parse({"image": "a:1", "qdrant": {"host": "q"}}, "x")
    assert (spec.replicas, spec.port, spec.service_port, spec.service_type) == (3, 8001, 8001, "ClusterIP")
    assert spec.database_url.name == "x-secrets" and spec.database_url.key == "database-url"
    assert spec.rollout_timeout_seconds == 300 and spec.rollout_health_checks and spec.backup_enabled


def test_embedded_qdrant_refuses_several_replicas():
    with pytest.raises(InvalidSpec, match="qdrant.host"):
        AdminApiSpec.parse({"image": "a:1", "replicas": 2}, "x")
    assert AdminApiSpec.parse({"image": "a:1", "replicas": 1}, "x").replicas == 1


def test_env_cannot_override_the_connection_settings():
    with pytest.raises(InvalidSpec, match="DATABASE_URL"):
        AdminApiSpec.parse({"image": "a:1", "replicas": 1, "env": [{"name": "DATABASE_URL", "value": "x"}]}, "x")


def test_image_is_required():
    with pytest.raises(InvalidSpec, match="image"):
        AdminApiSpec.parse({}, "x")
