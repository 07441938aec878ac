"""OWASP API2:2023 Broken Authentication: session fixation, logout, expired/garbage/forged cookies, brute force."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time

import pytest

from admin_api.auth.dependencies import SESSION_COOKIE
from tests.security.helpers import HISTORY_LIST, use_session_cookie
from tests.service.conftest import client_for


async def test_session_fixation_a_planted_id_never_becomes_a_session(client, make_user):
    """An attacker plants a cookie value in the victim's browser; after the victim logs in, it is not theirs."""
    user = await make_user()
    planted = "attacker-chosen-session-id-0123456789abcdefg"
    use_session_cookie(client, planted)
    response = await client.post("/api/v1/auth/login", json={"username": user.username, "password": user.password})
    assert response.status_code == 200
    issued = response.cookies[SESSION_COOKIE]
    assert issued != planted
    use_session_cookie(client, planted)
    assert (await client.get("/api/v1/auth/me")).status_code == 401


async def test_login_rotates_and_kills_the_previous_session(client, make_user, login):
    user = await make_user()
    first = (await login(client, user.username, user.password)).cookies[SESSION_COOKIE]
    second = (await login(client, user.username, user.password)).cookies[SESSION_COOKIE]
    assert first != second
    use_session_cookie(client, first)
    assert (await client.get("/api/v1/auth/me")).status_code == 401
    use_session_cookie(client, second)
    assert (await client.get("/api/v1/auth/me")).status_code == 200


async def test_logout_invalidates_the_cookie_on_the_server(app, user_client):
    stolen = user_client.cookies[SESSION_COOKIE]
    assert (await user_client.post("/api/v1/auth/logout")).status_code == 204
    # A copy of the cookie taken before logout (another tab, an attacker) no longer works anywhere.
    async with client_for(app) as attacker:
        use_session_cookie(attacker, stolen)
        assert (await attacker.get("/api/v1/auth/me")).status_code == 401
        assert (await attacker.post(HISTORY_LIST, json={})).status_code == 401
        assert (await attacker.post("/api/v1/auth/logout")).status_code == 401


@pytest.mark.parametrize(
    "cookie",
    [
        "",
        "garbage",
        "x" * 43,
        "x" * 129,
        "y" * 10_000,
        "null",
        "undefined",
        "../../etc/passwd",
        "' OR '1'='1",
        "*",  # a Redis glob, should the id ever be used as a pattern
        "session:*",
    ],
)
async def test_garbage_cookies_are_401(client, cookie):
    use_session_cookie(client, cookie)
    for response in (await client.get("/api/v1/auth/me"), await client.post(HISTORY_LIST, json={})):
        assert response.status_code == 401, (cookie, response.text)
        assert response.json()["detail"] in ("Not authenticated.", "Session expired or invalid; log in again.")


async def test_forged_cookies_from_knowledge_of_the_format_are_401(client, user_client, redis):
    """What an attacker might derive: the Redis key's hash itself, a user id, a JSON session record."""
    real = user_client.cookies[SESSION_COOKIE]
    key_hash = hashlib.sha256(real.encode()).hexdigest()
    assert await redis.exists(f"session:{key_hash}")
    forged_record = json.dumps({"user_id": user_client.user.id, "username": user_client.user.username,
                                "is_admin": True, "created_at": time.time()})
    for forged in (
        key_hash,  # the stored key is the hash: presenting it must not work
        f"session:{key_hash}",
        str(user_client.user.id),
        base64.urlsafe_b64encode(forged_record.encode()).decode(),
        real[:-1] + ("A" if real[-1] != "A" else "B"),  # one character off
        real.upper() if real.upper() != real else real.lower(),
    ):
        use_session_cookie(client, forged)
        assert (await client.get("/api/v1/auth/me")).status_code == 401, forged


async def test_an_expired_session_is_401(user_client, redis):
    key = "session:" + hashlib.sha256(user_client.cookies[SESSION_COOKIE].encode()).hexdigest()
    # Past the absolute lifetime (the cookie's own Max-Age is the client's business, not trusted).
    record = json.loads(await redis.get(key))
    record["created_at"] -= 10 * 24 * 3600
    await redis.set(key, json.dumps(record), ex=600)
    assert (await user_client.get("/api/v1/auth/me")).status_code == 401
    assert not await redis.exists(key)


async def test_brute_force_is_throttled(client, make_user, settings):
    user = await make_user()
    statuses = []
    for _ in range(settings.login_max_failures + 3):
        response = await client.post("/api/v1/auth/login", json={"username": user.username, "password": "guess"})
        statuses.append(response.status_code)
    assert statuses == [401] * settings.login_max_failures + [429] * 3
    assert int(response.headers["Retry-After"]) > 0
    # Even the right password is refused while throttled: the guesser cannot tell they found it.
    right = await client.post("/api/v1/auth/login", json={"username": user.username, "password": user.password})
    assert right.status_code == 429
    assert "set-cookie" not in right.headers


async def test_parallel_guesses_cannot_outrun_the_throttle(client, make_user, settings):
    """FINDING (fixed): the failure count was read before and written after the slow password check, so
    guesses sent at once were all verified (20 parallel guesses: 20 x 401, no 429)."""
    user = await make_user()
    guesses = 4 * settings.login_max_failures
    responses = await asyncio.gather(
        *(client.post("/api/v1/auth/login", json={"username": user.username, "password": f"guess-{i}"})
          for i in range(guesses))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(401) == settings.login_max_failures, statuses
    assert statuses.count(429) == guesses - settings.login_max_failures


async def test_throttle_is_per_address_so_others_can_still_log_in(app, make_user, settings):
    user = await make_user()
    async with client_for(app, client_ip="203.0.113.7") as attacker:
        for _ in range(settings.login_max_failures + 1):
            await attacker.post("/api/v1/auth/login", json={"username": user.username, "password": "guess"})
    async with client_for(app, client_ip="198.51.100.9") as owner:
        response = await owner.post("/api/v1/auth/login", json={"username": user.username, "password": user.password})
        assert response.status_code == 200


async def test_unknown_user_and_wrong_password_answer_the_same(client, make_user):
    user = await make_user()
    wrong = await client.post("/api/v1/auth/login", json={"username": user.username, "password": "nope"})
    unknown = await client.post("/api/v1/auth/login", json={"username": "no-such-user-x", "password": "nope"})
    assert (wrong.status_code, wrong.json()) == (unknown.status_code, unknown.json()) == (
        401, {"detail": "Invalid username or password."})


async def test_a_deactivated_users_session_data_is_not_escalated_by_the_cookie(client, user_client, redis):
    """The session's is_admin comes from Redis, set at login from the database; the client cannot set it."""
    me = (await user_client.get("/api/v1/auth/me")).json()
    assert me["is_admin"] is False
    user_client.cookies.set("is_admin", "true", domain="testserver.local")
    assert (await user_client.get("/api/v1/auth/me", headers={"X-Is-Admin": "true"})).json()["is_admin"] is False


async def _guess(app, username: str, address: str, password: str = "wrong-guess"):
    async with client_for(app, client_ip=address) as http:
        return await http.post("/api/v1/auth/login", json={"username": username, "password": password})


@pytest.fixture
async def throttled_app(make_settings):
    """An app with small throttle limits, so the tests stay short."""
    from admin_api.main import create_app

    application = create_app(make_settings(login_address_max_failures=5, login_account_max_failures=3,
                                           login_backoff_max_seconds=60))
    async with application.router.lifespan_context(application):
        yield application


async def test_spraying_one_password_across_accounts_is_limited_per_address(throttled_app, make_user):
    """FINDING (fixed): the throttle was per (user, address), so one address tried one password on every account."""
    statuses = [(await _guess(throttled_app, f"sprayed-{i}", "203.0.113.50")).status_code for i in range(8)]
    assert statuses == [401] * 5 + [429] * 3
    user = await make_user()
    refused = await _guess(throttled_app, user.username, "203.0.113.50", user.password)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert (await _guess(throttled_app, user.username, "198.51.100.1", user.password)).status_code == 200


async def test_guesses_from_many_addresses_back_off_the_account_without_locking_it(throttled_app, make_user):
    """Per account, across addresses: past the limit one guess per back-off period (doubling), not a lock;
    and an address the owner logged in from before is not held back by someone else's guesses."""
    user = await make_user()
    assert (await _guess(throttled_app, user.username, "192.0.2.10", user.password)).status_code == 200
    statuses = [(await _guess(throttled_app, user.username, f"198.51.100.{i}")).status_code for i in range(3)]
    assert statuses == [401] * 3
    # Past the limit, guesses from new addresses: one per back-off period is let through (1 s, 2 s, 4 s, ...),
    # the others are 429. (How many get through depends on the machine's speed, not on the assertions.)
    later = [await _guess(throttled_app, user.username, f"198.51.100.{20 + i}") for i in range(6)]
    assert later[0].status_code == 401
    backed_off = [r for r in later if r.status_code == 429]
    assert backed_off and {r.status_code for r in later} <= {401, 429}
    assert all(1 <= int(r.headers["Retry-After"]) <= 60 for r in backed_off)
    # The owner, from where they logged in before, is not locked out by the guesses.
    assert (await _guess(throttled_app, user.username, "192.0.2.10", user.password)).status_code == 200


async def test_logins_refused_for_saturation_do_not_count_as_failures(make_settings, make_user):
    """FINDING (fixed): a login refused with 503 (password hashing saturated) stayed counted as a failed one,
    so bursts of correct logins from one address (an office behind NAT) locked that address out for 15 min."""
    from admin_api.main import create_app

    application = create_app(make_settings(login_address_max_failures=6, login_hash_concurrency=1, login_hash_queue=0))
    users = [await make_user() for _ in range(5)]
    statuses = []
    async with application.router.lifespan_context(application):
        for _ in range(3):
            burst = await asyncio.gather(*(_guess(application, u.username, "203.0.113.80", u.password) for u in users))
            statuses += [r.status_code for r in burst]
        assert 503 in statuses and set(statuses) <= {200, 503}, statuses
        late = await _guess(application, users[0].username, "203.0.113.80", users[0].password)
        assert late.status_code == 200


async def test_the_account_back_off_ends(throttled_app, make_user):
    user = await make_user()
    for i in range(4):
        await _guess(throttled_app, user.username, f"198.51.100.{30 + i}")
    backed_off = await _guess(throttled_app, user.username, "198.51.100.40")
    assert backed_off.status_code == 429
    await asyncio.sleep(int(backed_off.headers["Retry-After"]) + 1)
    # Not a hard lock: after the back-off the right password works from anywhere.
    assert (await _guess(throttled_app, user.username, "198.51.100.41", user.password)).status_code == 200
