import pytest

from adminapi_operator.builders import Owner


@pytest.fixture
def owner() -> Owner:
    return Owner(name="admin-api", namespace="ai-streams", uid="0b7a1d2c-1111-2222-3333-444455556666")


# The guide's deployment, as the sample AdminApi (manifests/sample-adminapi.yaml) states it.
GUIDE_SPEC = {
    "image": "registry.example.com/admin-api:1.0.0",
    "qdrant": {"host": "qdrant"},
}
