"""POST /api/calls and the agent page's Call a number form: what a request that cannot
be placed is told, access as for the rest of the API, and the signed callbacks."""

from __future__ import annotations

import pytest

from agentplatform.carriers.twilio.signature import SIGNATURE_HEADER, sign
from agentplatform.web.dial_admin import BadParams, params_from_lines
from agentplatform.web.passwords import hash_password

from .conftest import csrf_of, remote, served

HASH = hash_password("correct horse battery", n=2**10)
TO = "+15555550142"


@pytest.mark.parametrize("body,says", [
    (b"{not json", "not JSON"),
    (b"[]", "JSON object"),
    (b'{"agent": "front-desk"}', "to is required"),
    (b'{"to": "+15555550142"}', "agent is required"),
    (b'{"agent": "front-desk", "to": "+15555550142", "colour": "red"}', "unknown field 'colour'"),
    (b'{"agent": "front-desk", "to": 5555550142}', "to must be text"),
    (b'{"agent": "front-desk", "to": "+15555550142", "machine_detection": "maybe"}',
     "off, hangup, leave_message"),
    (b'{"agent": "front-desk", "to": "+15555550142", "params": [1]}', "params must be an object"),
])
async def test_a_malformed_request_is_422_saying_what_is_wrong(tmp_path, agent_file, body, says):
    async with served(tmp_path) as client:
        response = await client.post("/api/calls", content=body,
                                     headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert says in response.json()["detail"] and response.json()["reason"] == "invalid"


async def test_an_unknown_agent_or_a_bad_number_is_422(tmp_path, agent_file):
    async with served(tmp_path, twilio_account_sid="AC1", public_url="https://v.example") as c:
        nobody = await c.post("/api/calls", json={"agent": "nobody", "to": TO})
        bad = await c.post("/api/calls", json={"agent": "front-desk", "to": "12345"})
    assert nobody.status_code == 422 and nobody.json()["reason"] == "unknown_agent"
    assert bad.status_code == 422 and "E.164" in bad.json()["detail"]


async def test_without_twilio_credentials_dialing_is_503_naming_the_settings(tmp_path, agent_file):
    async with served(tmp_path) as client:  # TWILIO_ACCOUNT_SID is empty
        response = await client.post("/api/calls", json={"agent": "front-desk", "to": TO})
    assert response.status_code == 503
    assert response.json()["reason"] == "carrier_unavailable"
    assert "TWILIO_ACCOUNT_SID" in response.json()["detail"]


async def test_dialing_needs_the_api_key_when_access_is_protected(tmp_path, agent_file):
    async with remote(tmp_path, admin_password_hash=HASH, api_key="k-123") as client:
        body = {"agent": "front-desk", "to": TO}
        assert (await client.post("/api/calls", json=body)).status_code == 401
        keyed = await client.post("/api/calls", json=body, headers={"X-API-Key": "k-123"})
    assert keyed.status_code == 503  # past the door; no carrier can dial in this setup


async def test_twilio_dial_callbacks_refuse_what_twilio_did_not_sign(tmp_path, agent_file):
    async with served(tmp_path) as client:
        base = client.server.base_url
        form = {"CallSid": "CA1", "AnsweredBy": "human"}
        forged = await client.post("/twilio/amd", data=form,
                                   headers={SIGNATURE_HEADER: sign("other-token",
                                                                   base + "/twilio/amd", form)})
        status = await client.post("/twilio/dial-status?call=c1&agent=front-desk",
                                   data={"CallSid": "CA1", "CallStatus": "busy"})
    assert forged.status_code == 403 and status.status_code == 403


async def test_the_agent_page_offers_call_a_number_and_the_form_reports_refusals(
        tmp_path, agent_file):
    async with served(tmp_path) as client:
        page = await client.get("/agents/front-desk")
        assert 'action="/agents/front-desk/dial"' in page.text
        token = csrf_of(page.text)
        stale = await client.post("/agents/front-desk/dial", data={"to": TO})
        bad_params = await client.post("/agents/front-desk/dial", data={
            "csrf_token": token, "to": TO, "params": "name Ada"})
        no_carrier = await client.post("/agents/front-desk/dial", data={
            "csrf_token": token, "to": TO, "params": "name=Ada"})
    assert stale.status_code == 403
    assert bad_params.status_code == 422 and "params line 1 is not name=value" in bad_params.text
    assert no_carrier.status_code == 503 and "TWILIO_ACCOUNT_SID" in no_carrier.text
    assert 'value="+15555550142"' in no_carrier.text  # what was typed is kept


def test_params_lines_are_name_value_pairs():
    assert params_from_lines("name = Ada\n\nslot=9:30=am\n") == {"name": "Ada", "slot": "9:30=am"}
    with pytest.raises(BadParams):
        params_from_lines("=x")
