"""DNS rebinding and proxies: the server answers only to names it was given, a write
comes only from its own pages, and open mode trusts only a browser on this machine."""

from __future__ import annotations

import contextlib
import logging

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from agentplatform.app import create_app
from agentplatform.carriers.twilio.signature import SIGNATURE_HEADER, sign
from agentplatform.web.hosts import BadHost, HostPolicy, split_host
from agentplatform.web.passwords import hash_password

from .conftest import csrf_of, served, settings_for

HASH = hash_password("pw", n=2**10)


@contextlib.asynccontextmanager
async def from_this_machine(tmp_path, host: str, **overrides):
    """The app in-process, reached from 127.0.0.1 with ``Host: host``."""
    app = create_app(settings_for(tmp_path, **overrides))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}",
                                     follow_redirects=False) as client:
            yield client


# ------------------------------------------------------------------ the rules


def test_host_values_are_parsed_strictly():
    assert split_host("LocalHost:8000") == ("localhost", "8000")
    assert split_host("[::1]:8000") == ("::1", "8000")
    assert split_host("calls.example.com.") == ("calls.example.com", "")
    for bad in ("", "a b", "evil.example/x", "user@host", "::1", "host:port", "[::1", "h:123456"):
        with pytest.raises(BadHost):
            split_host(bad)


def test_the_allow_list_is_loopback_public_url_and_allowed_hosts():
    policy = HostPolicy.build(public_url="https://calls.example.com/base",
                              allowed_hosts=" admin.internal:8443, *.corp.example ")
    for name in ("localhost", "127.0.0.1", "::1", "calls.example.com", "admin.internal",
                 "a.corp.example", "b.a.corp.example"):
        assert policy.allows(name), name
    for name in ("evil.example", "corp.example", "calls.example.com.evil.example",
                 "xcorp.example"):
        assert not policy.allows(name), name


def test_a_malformed_allowed_host_stops_the_server_naming_it(tmp_path):
    with pytest.raises(ValueError, match="ALLOWED_HOSTS"):
        create_app(settings_for(tmp_path, allowed_hosts="good.example, bad host"))


def test_origins_must_be_this_origin_or_an_allowed_remote_name():
    policy = HostPolicy.build(public_url="https://calls.example.com")
    policy.check_origin("http://127.0.0.1:8000", "127.0.0.1:8000")
    policy.check_origin("https://calls.example.com", "127.0.0.1:8000")  # behind a proxy
    for origin in ("https://evil.example", "http://localhost:3000", "null", "file://x",
                   "http://127.0.0.1:9999"):
        with pytest.raises(BadHost):
            policy.check_origin(origin, "127.0.0.1:8000")


# ------------------------------------------------------------------ the server


@pytest.mark.parametrize("password", [None, HASH], ids=["open", "password"])
async def test_a_rebound_name_from_this_machine_gets_nothing(tmp_path, agent_file, password):
    before = agent_file.read_bytes()
    extra = {"admin_password_hash": password} if password else {}
    async with from_this_machine(tmp_path, "evil.example", **extra) as client:
        for method, path in (("GET", "/"), ("GET", "/agents/front-desk"), ("GET", "/api/agents"),
                             ("GET", "/login"), ("GET", "/calls"), ("GET", "/metrics"),
                             ("POST", "/agents/front-desk/delete"),
                             ("POST", "/twilio/voice"), ("DELETE", "/api/agents/front-desk")):
            response = await client.request(method, path)
            assert response.status_code == 400, (method, path, response.text)
            assert "evil.example" in response.json()["detail"]
        # A load balancer's health check may use any name; it learns nothing but "ok".
        assert (await client.get("/healthz")).status_code == 200
    assert agent_file.read_bytes() == before


async def test_two_host_headers_are_refused(tmp_path, agent_file):
    async with from_this_machine(tmp_path, "127.0.0.1") as client:
        request = client.build_request("GET", "/agents/front-desk")
        request.headers = httpx.Headers([("host", "evil.example"), ("host", "127.0.0.1")])
        response = await client.send(request)
        assert response.status_code == 400 and "more than one Host" in response.text


async def test_the_names_we_were_given_are_answered(tmp_path, agent_file):
    overrides = {"public_url": "https://calls.example.com", "allowed_hosts": "*.corp.example"}
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000"):
        async with from_this_machine(tmp_path, host, **overrides) as client:
            assert (await client.get("/agents/front-desk")).status_code == 200, host
    for host in ("calls.example.com", "admin.corp.example"):
        async with from_this_machine(tmp_path, host, admin_password_hash=HASH,
                                     **overrides) as client:
            assert (await client.get("/login")).status_code == 200, host
            assert (await client.post("/twilio/voice", data={"CallSid": "CA1"})).status_code \
                != 400, host


async def test_a_write_from_another_origin_is_refused_even_with_a_valid_form(tmp_path,
                                                                          agent_file):
    async with served(tmp_path) as client:
        token = csrf_of((await client.get("/agents/front-desk")).text)
        own = client.server.base_url  # type: ignore[attr-defined]
        for origin in ("https://evil.example", "http://localhost:3000", "null"):
            refused = await client.post("/agents/front-desk/delete", data={"csrf_token": token},
                                        headers={"Origin": origin})
            assert refused.status_code == 403, origin
            assert agent_file.exists()
        refused = await client.post("/agents/front-desk/delete", data={"csrf_token": token},
                                    headers={"Sec-Fetch-Site": "cross-site"})
        assert refused.status_code == 403 and agent_file.exists()
        done = await client.post("/agents/front-desk/delete", data={"csrf_token": token},
                                 headers={"Origin": own})
        assert done.status_code == 303
    assert not agent_file.exists()


async def test_a_socket_opened_by_another_sites_page_is_refused_at_the_handshake(tmp_path,
                                                                               agent_file):
    async with served(tmp_path) as client:
        ws_url = client.server.base_url.replace("http", "ws") + "/browser-call/media"  # type: ignore[attr-defined]
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url, origin="https://evil.example"):
                pass
        assert refused.value.response.status_code == 403


@pytest.mark.parametrize("header", ["X-Real-IP", "X-Forwarded-For", "X-Forwarded-Host",
                                    "X-Forwarded-Proto", "Forwarded", "Via"])
async def test_open_mode_refuses_a_request_relayed_by_a_proxy(tmp_path, agent_file, header):
    async with from_this_machine(tmp_path, "127.0.0.1:8000") as client:
        for path in ("/agents/front-desk", "/api/agents"):
            relayed = await client.get(path, headers={header: "198.51.100.4"})
            assert relayed.status_code == 403, (path, relayed.text)
            assert "proxy" in relayed.json()["detail"]
            assert "laptop" in relayed.json()["detail"]


async def test_open_mode_answers_the_admin_only_under_a_loopback_name(tmp_path, agent_file):
    # A proxy on this machine that passes the public name and adds no header at all.
    async with from_this_machine(tmp_path, "calls.example.com", twilio_auth_token="tw",
                                 public_url="https://calls.example.com") as client:
        assert (await client.get("/agents/front-desk")).status_code == 403
        assert (await client.get("/api/agents")).status_code == 403
        # Twilio's webhooks never rested on "local": they check their own signature.
        form = {"CallSid": "CA1", "To": "+15555550100"}
        signed = sign("tw", "https://calls.example.com/twilio/voice", form)
        assert (await client.post("/twilio/voice", data=form,
                                  headers={SIGNATURE_HEADER: signed})).status_code == 200


async def test_start_log_says_open_mode_is_for_a_laptop_and_names_the_hosts(tmp_path,
                                                                             caplog):
    caplog.set_level(logging.INFO, logger="agentplatform.web.auth")
    async with from_this_machine(tmp_path, "127.0.0.1", allowed_hosts="admin.internal"):
        pass
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "laptop" in text and "proxy" in text
    assert "admin.internal" in text
