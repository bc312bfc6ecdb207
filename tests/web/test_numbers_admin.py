"""The numbers page: each agent's numbers, the exact Twilio URLs, credential presence,
and pointing a number's voice webhook at this server through the Twilio REST API
(against the Twilio REST simulator, over real sockets)."""

from __future__ import annotations

from agentplatform.testing.twilio_rest_server import (
    SIMULATED_ACCOUNT_SID,
    TwilioRestServer,
)

from .conftest import csrf_of, served, write_agent

PUBLIC = "https://voice.example.com"


def cookies(client) -> dict[str, str]:
    """With an https PUBLIC_URL the session cookie is Secure, which a client only sends
    over https; this test server is plain http on loopback, so send it by hand."""
    return {"cookie": "; ".join(f"{c.name}={c.value}" for c in client.cookies.jar)}


async def test_the_page_lists_numbers_urls_and_what_is_set_without_secrets(tmp_path):
    write_agent(tmp_path / "agents")
    async with served(tmp_path, twilio_account_sid="", public_url="") as client:
        html = (await client.get("/numbers")).text
    assert 'data-number="+15555550100"' in html
    assert "/twilio/voice</code>" in html and "/twilio/status</code>" in html
    assert "PUBLIC_URL is not set" in html
    assert "not set (TWILIO_ACCOUNT_SID)" in html
    assert "Point +15555550100" not in html  # no button without credentials
    assert "SIP_LISTEN" in html


async def test_a_number_is_pointed_at_this_server_through_the_twilio_rest_api(tmp_path):
    write_agent(tmp_path / "agents")
    async with TwilioRestServer(numbers=["+15555550100", "+15555550999"]) as twilio, \
            served(tmp_path, twilio_account_sid=SIMULATED_ACCOUNT_SID,
                   twilio_api_base_url=twilio.url, public_url=PUBLIC) as client:
            page = (await client.get("/numbers")).text
            token = csrf_of(page)
            done = await client.post("/numbers/twilio-webhook",
                                     data={"csrf_token": token, "number": "+15555550100"},
                                     headers=cookies(client))
            not_ours = await client.post("/numbers/twilio-webhook",
                                         data={"csrf_token": token, "number": "+15555550999"},
                                         headers=cookies(client))
    assert "Point +15555550100 at this server on Twilio" in page
    assert done.status_code == 200, done.text
    assert f"{PUBLIC}/twilio/voice" in done.text
    held = twilio.number_of("+15555550100")
    assert held is not None and held["voice_url"] == f"{PUBLIC}/twilio/voice"
    assert held["status_callback"] == f"{PUBLIC}/twilio/status"
    assert held["voice_method"] == "POST"
    # A number no agent answers is refused before Twilio is asked.
    assert not_ours.status_code == 422
    assert twilio.number_of("+15555550999")["voice_url"] == ""


async def test_a_number_the_twilio_account_lacks_is_reported_and_nothing_changes(tmp_path):
    write_agent(tmp_path / "agents")
    async with TwilioRestServer(numbers=["+15555550199"]) as twilio, \
            served(tmp_path, twilio_account_sid=SIMULATED_ACCOUNT_SID,
                   twilio_api_base_url=twilio.url, public_url=PUBLIC) as client:
            token = csrf_of((await client.get("/numbers")).text)
            refused = await client.post("/numbers/twilio-webhook",
                                        data={"csrf_token": token, "number": "+15555550100"},
                                     headers=cookies(client))
    assert refused.status_code == 502 and "has no number +15555550100" in refused.text
    assert twilio.number_of("+15555550199")["voice_url"] == ""


async def test_without_a_public_url_the_button_is_refused_saying_so(tmp_path):
    write_agent(tmp_path / "agents")
    async with served(tmp_path, twilio_account_sid=SIMULATED_ACCOUNT_SID,
                      public_url="") as client:
        token = csrf_of((await client.get("/numbers")).text)
        refused = await client.post("/numbers/twilio-webhook",
                                    data={"csrf_token": token, "number": "+15555550100"},
                                     headers=cookies(client))
    assert refused.status_code == 422 and "set PUBLIC_URL" in refused.text
