"""Who gets in: login, signed sessions, CSRF, API keys, loopback-only open mode."""

from __future__ import annotations

import io
import sys

import pytest

from agentplatform.carriers.twilio.signature import SIGNATURE_HEADER, sign
from agentplatform.cli import main as cli_main
from agentplatform.signing import SESSION_COOKIE, STREAM_TOKEN, Signer
from agentplatform.single_use import SingleUseUnavailable
from agentplatform.web.auth import Access
from agentplatform.web.passwords import check_hash_format, hash_password, verify_password
from agentplatform.web.sessions import SessionSigner

from .conftest import csrf_of, remote, served, settings_for

PASSWORD = "correct horse battery staple"
# Cheap scrypt parameters keep these tests fast; the format carries them.
HASH = hash_password(PASSWORD, n=2**10)


def test_password_hash_verifies_only_the_right_password():
    assert verify_password(PASSWORD, HASH)
    assert not verify_password(PASSWORD + "!", HASH)
    assert not verify_password(PASSWORD, "scrypt$1024$8$1$bm90$YmFk")  # wrong digest
    assert hash_password(PASSWORD) != hash_password(PASSWORD)  # salted


def test_a_malformed_password_hash_stops_the_server_instead_of_leaving_it_open(tmp_path):
    with pytest.raises(ValueError, match="hash-password"):
        check_hash_format("plaintext-password")
    with pytest.raises(ValueError):
        Access(settings_for(tmp_path, admin_password_hash="plaintext-password"))


@pytest.mark.parametrize("path", ["/", "/api", "/api/", "/agents", "/log", "debug/"])
def test_a_carrier_cannot_make_the_admin_side_public(tmp_path, path):
    with pytest.raises(ValueError, match="would open the admin side"):
        Access(settings_for(tmp_path), carrier_paths=(path,))


def test_only_paths_the_carriers_declare_are_public_besides_the_fixed_ones(tmp_path):
    access = Access(settings_for(tmp_path), carrier_paths=("/twilio/",),
                    server_paths=("/twilio/",))
    assert access.public_prefixes == ("/static/", "/twilio/")
    assert "/browser-call/media".startswith(access.public_prefixes) is False
    assert access.no_origin_prefixes == ("/twilio/",)


def test_session_cookies_that_are_forged_or_expired_are_not_sessions():
    now = [1000.0]
    signer = SessionSigner(b"secret", 60, clock=lambda: now[0])
    cookie = signer.new("admin").value
    assert signer.loads(cookie).user == "admin"
    body, mac = cookie.split(".")
    assert signer.loads(body[:-2] + "xx." + mac) is None
    assert SessionSigner(b"other", 60, clock=lambda: now[0]).loads(cookie) is None
    now[0] += 61
    assert signer.loads(cookie) is None


def test_session_cookies_are_signed_by_the_one_signer_for_their_own_purpose():
    session = SessionSigner(b"secret", 60).new("admin")
    body = Signer(b"secret", SESSION_COOKIE).loads(session.value)
    assert (body["u"], body["c"], body["jti"]) == ("admin", session.csrf, session.jti)
    # A value signed under the same secret for another use is no session.
    stream_token = Signer(b"secret", STREAM_TOKEN).dumps(dict(body), 60)
    assert SessionSigner(b"secret", 60).loads(stream_token) is None


def test_a_session_signed_under_another_password_hash_is_not_a_session():
    old = SessionSigner(b"secret", 60, password_hash=HASH).new("admin")
    assert SessionSigner(b"secret", 60, password_hash=HASH).loads(old.value) is not None
    other = hash_password("another password", n=2**10)
    assert SessionSigner(b"secret", 60, password_hash=other).loads(old.value) is None


def test_hash_password_command_prints_a_hash_that_verifies(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret-pass\n"))
    assert cli_main(["hash-password", "--password-stdin"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("ADMIN_PASSWORD_HASH='scrypt$")
    assert verify_password("s3cret-pass", line.split("'")[1])


async def test_without_a_password_only_this_machine_gets_in(tmp_path, agent_file):
    async with served(tmp_path) as local:
        assert (await local.get("/")).status_code == 200
        assert (await local.get("/api/agents")).status_code == 200
        # A request relayed by a proxy on this machine is not "local".
        local.cookies.clear()
        relayed = await local.get("/", headers={"X-Forwarded-For": "198.51.100.4"})
        assert relayed.status_code == 403
    async with remote(tmp_path) as client:
        page = await client.get("/")
        assert page.status_code == 403 and "ADMIN_PASSWORD_HASH" in page.json()["detail"]
        assert (await client.get("/api/agents")).status_code == 401
        assert (await client.get("/healthz")).status_code == 200


async def test_start_log_says_the_server_is_open_to_loopback_only(tmp_path, agent_file, caplog):
    caplog.set_level("WARNING", logger="agentplatform.web.auth")
    async with served(tmp_path):
        pass
    assert any("loopback" in r.getMessage() for r in caplog.records)


async def test_login_gives_a_session_that_opens_the_admin_screens(tmp_path, agent_file):
    async with remote(tmp_path, admin_password_hash=HASH) as client:
        first = await client.get("/agents/front-desk")
        assert first.status_code == 303
        assert first.headers["location"] == "/login?next=%2Fagents%2Ffront-desk"
        form = await client.get("/login")
        token = form.text.split('name="login_token" value="')[1].split('"')[0]
        wrong = await client.post("/login", data={"user": "admin", "password": "nope",
                                                  "login_token": token, "next": "/"})
        assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
        token = wrong.text.split('name="login_token" value="')[1].split('"')[0]
        ok = await client.post("/login", data={"user": "admin", "password": PASSWORD,
                                               "login_token": token,
                                               "next": "/agents/front-desk"})
        assert ok.status_code == 303 and ok.headers["location"] == "/agents/front-desk"
        page = await client.get("/agents/front-desk")
        assert page.status_code == 200 and "signed in as admin" in page.text


async def test_login_never_redirects_off_site(tmp_path, agent_file):
    async with remote(tmp_path, admin_password_hash=HASH) as client:
        form = await client.get("/login")
        token = form.text.split('name="login_token" value="')[1].split('"')[0]
        ok = await client.post("/login", data={"user": "admin", "password": PASSWORD,
                                               "login_token": token,
                                               "next": "//evil.example/x"})
        assert ok.headers["location"] == "/"


async def test_a_login_form_posted_from_elsewhere_is_refused(tmp_path, agent_file):
    async with remote(tmp_path, admin_password_hash=HASH) as client:
        refused = await client.post("/login", data={"user": "admin", "password": PASSWORD,
                                                    "login_token": "guessed", "next": "/"})
        assert refused.status_code == 403
        assert "ap_session" not in refused.headers.get("set-cookie", "")


async def test_api_needs_the_key_when_access_is_protected(tmp_path, agent_file):
    async with remote(tmp_path, admin_password_hash=HASH, api_key="k-123",
                      twilio_auth_token="tw-token") as client:
        assert (await client.get("/api/agents")).status_code == 401
        assert (await client.get("/api/agents", headers={"X-API-Key": "wrong"})).status_code == 401
        assert (await client.get("/api/agents", headers={"X-API-Key": "k-123"})).status_code == 200
        bearer = await client.get("/api/agents", headers={"Authorization": "Bearer k-123"})
        assert bearer.status_code == 200
        # What Twilio and monitoring need stays reachable (Twilio checks its own signature).
        assert (await client.get("/healthz")).status_code == 200
        form = {"CallSid": "CA1", "To": "+1"}
        signed = sign("tw-token", "http://admin.example/twilio/voice", form)
        assert (await client.post("/twilio/voice", data=form,
                                  headers={SIGNATURE_HEADER: signed})).status_code == 200


async def test_a_form_post_without_the_csrf_token_changes_nothing(tmp_path, agent_file):
    before = agent_file.read_bytes()
    async with served(tmp_path) as client:
        page = await client.get("/agents/front-desk")
        token = csrf_of(page.text)
        for data in ({}, {"csrf_token": "forged"}):
            refused = await client.post("/agents/front-desk/delete", data=data)
            assert refused.status_code == 403
        assert agent_file.read_bytes() == before
        done = await client.post("/agents/front-desk/delete", data={"csrf_token": token})
        assert done.status_code == 303
    assert not agent_file.exists()


async def test_a_cross_site_post_to_the_open_api_is_refused(tmp_path, agent_file):
    async with served(tmp_path) as client:
        hostile = await client.post("/debug/metrics/reset",
                                    headers={"Origin": "https://evil.example"})
        assert hostile.status_code == 403
        same = await client.post("/debug/metrics/reset")
        assert same.status_code == 200


async def test_a_session_calling_the_api_must_send_its_csrf_header(tmp_path, agent_file):
    async with served(tmp_path) as client:
        token = csrf_of((await client.get("/agents/front-desk")).text)  # session cookie set
        assert (await client.post("/debug/metrics/reset")).status_code == 403
        ok = await client.post("/debug/metrics/reset", headers={"X-CSRF-Token": token})
        assert ok.status_code == 200


async def log_in(client, password: str = PASSWORD) -> str:
    """Sign in through the form; the session cookie's value."""
    form = await client.get("/login")
    token = form.text.split('name="login_token" value="')[1].split('"')[0]
    ok = await client.post("/login", data={"user": "admin", "password": password,
                                           "login_token": token, "next": "/"})
    assert ok.status_code == 303, ok.text
    return client.cookies["ap_session"]


async def test_a_cookie_captured_before_logout_is_refused_after_it(tmp_path, agent_file):
    async with remote(tmp_path, admin_password_hash=HASH, session_secret="s") as client:
        stolen = await log_in(client)
        page = await client.get("/agents/front-desk")
        assert page.status_code == 200
        out = await client.post("/logout", data={"csrf_token": csrf_of(page.text)})
        assert out.status_code == 303
        client.cookies.clear()
        client.cookies.set("ap_session", stolen)
        again = await client.get("/agents/front-desk")
        assert again.status_code == 303 and again.headers["location"].startswith("/login")
        assert (await client.get("/api/agents")).status_code == 401


async def test_logout_ends_the_session_in_every_process_on_the_database(tmp_path, agent_file):
    settings = {"admin_password_hash": HASH, "session_secret": "shared"}
    async with remote(tmp_path, **settings) as first, remote(tmp_path, **settings) as second:
        cookie = await log_in(first)
        second.cookies.set("ap_session", cookie)
        page = await second.get("/agents/front-desk")
        assert page.status_code == 200
        assert (await first.post("/logout", data={"csrf_token": csrf_of(page.text)})
                ).status_code == 303
        assert (await second.get("/agents/front-desk")).status_code == 303


async def test_changing_the_password_ends_every_session(tmp_path, agent_file):
    async with remote(tmp_path, admin_password_hash=HASH, session_secret="shared") as before:
        cookie = await log_in(before)
    new_hash = hash_password("a new password", n=2**10)
    async with remote(tmp_path, admin_password_hash=new_hash, session_secret="shared") as after:
        after.cookies.set("ap_session", cookie)
        assert (await after.get("/agents/front-desk")).status_code == 303


class _StoreDown:
    async def claim(self, token_id: str, expires_at: float) -> bool:
        raise SingleUseUnavailable("database down")

    async def is_claimed(self, token_id: str) -> bool:
        raise SingleUseUnavailable("database down")


async def test_a_session_that_cannot_be_checked_for_logout_is_refused(tmp_path, agent_file):
    async with remote(tmp_path, admin_password_hash=HASH) as client:
        await log_in(client)
        client._transport.app.state.access.revocations = _StoreDown()  # type: ignore[attr-defined]
        refused = await client.get("/agents/front-desk")
        assert refused.status_code == 503 and "sessions cannot be checked" in refused.text
