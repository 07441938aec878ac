import pytest

pytest_plugins = [
    "tests.support.services",
    "tests.support.openai_server",
    "tests.support.kube",
    "tests.support.s3",
    "tests.support.models",
]


@pytest.fixture(autouse=True)
def _login_throttle_starts_clean(request: pytest.FixtureRequest) -> None:
    """Each test starts with no login failures on record. The suite's many wrong-password tests all come from
    one address and share one Redis database: left to add up, they reach the per-address limit and every
    later login of the session is refused (429), whatever that test does."""
    if "redis_url" not in request.fixturenames:
        return
    import redis

    client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
    try:
        keys = list(client.scan_iter("login-*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
