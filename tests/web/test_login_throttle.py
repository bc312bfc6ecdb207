"""Password guessing is slowed per address, and a right password does not skip the wait."""

from __future__ import annotations

import contextlib

import httpx

from agentplatform.app import create_app
from agentplatform.web.login_throttle import LoginThrottle, client_key
from agentplatform.web.passwords import hash_password

from .conftest import settings_for

PASSWORD = "correct horse"
HASH = hash_password(PASSWORD, n=2**10)


def test_failures_beyond_the_free_ones_make_the_address_wait_longer_each_time():
    now = [0.0]
    throttle = LoginThrottle(free=3, base=1.0, cap=8.0, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.retry_after("198.51.100.1") == 0
        throttle.failed("198.51.100.1")
    assert throttle.retry_after("198.51.100.1") == 1.0
    assert throttle.retry_after("198.51.100.2") == 0  # another address is not slowed
    waits = []
    for _ in range(5):
        now[0] += throttle.retry_after("198.51.100.1")
        throttle.failed("198.51.100.1")
        waits.append(throttle.retry_after("198.51.100.1"))
    assert waits == [2.0, 4.0, 8.0, 8.0, 8.0]  # doubling, capped
    throttle.succeeded("198.51.100.1")
    assert throttle.retry_after("198.51.100.1") == 0


def test_an_address_is_forgotten_after_a_quiet_spell():
    now = [0.0]
    throttle = LoginThrottle(free=1, forget_after=100.0, clock=lambda: now[0])
    throttle.failed("198.51.100.1")
    throttle.failed("198.51.100.1")
    assert throttle.retry_after("198.51.100.1") > 0
    now[0] += 100.0
    assert throttle.retry_after("198.51.100.1") == 0


def test_an_ipv6_client_is_counted_by_its_64_and_memory_is_bounded():
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9")
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:198.51.100.1") == "198.51.100.1"
    throttle = LoginThrottle(free=0, max_clients=2, clock=lambda: 0.0)
    for n in range(5):
        throttle.failed(f"198.51.100.{n}")
    assert throttle.retry_after("198.51.100.4") > 0
    assert throttle.retry_after("198.51.100.0") == 0  # the oldest were dropped


@contextlib.asynccontextmanager
async def signing_in(tmp_path, throttle: LoginThrottle):
    app = create_app(settings_for(tmp_path, admin_password_hash=HASH,
                                  allowed_hosts="admin.example"))
    async with app.router.lifespan_context(app):
        app.state.access.login_throttle = throttle
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://admin.example",
                                     follow_redirects=False) as client:
            yield client


async def attempt(client, password: str) -> httpx.Response:
    form = await client.get("/login")
    token = form.text.split('name="login_token" value="')[1].split('"')[0]
    return await client.post("/login", data={"user": "admin", "password": password,
                                             "login_token": token, "next": "/"})


async def test_after_repeated_failures_even_the_right_password_must_wait(tmp_path,
                                                                          agent_file):
    now = [0.0]
    async with signing_in(tmp_path, LoginThrottle(free=3, clock=lambda: now[0])) as client:
        for _ in range(3):
            assert (await attempt(client, "guess")).status_code == 401
        refused = await attempt(client, PASSWORD)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "1"
        assert "Too many failed sign-ins" in refused.text
        assert "ap_session" not in refused.headers.get("set-cookie", "")
        now[0] += 1.0
        assert (await attempt(client, PASSWORD)).status_code == 303
