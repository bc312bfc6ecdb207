"""The campaigns API and admin pages: uploads checked row by row (one bad row refuses
the whole upload, every problem by line), settings checked field by field, and the
pause/resume/cancel life, over the app on loopback."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from agentplatform.testing.twilio_rest_server import (
    SIMULATED_ACCOUNT_SID,
    TwilioRestServer,
)

from .conftest import csrf_of, remote, served, write_agent

AGENT = """\
name: reminders
prompt: You call patients.
phone_numbers: ["+15555550100"]
limits:
  max_concurrent_calls: 2
"""
GOOD_CSV = b"number,name\n+14155550100,Ada\n+442071234567,Bob\n"
BAD_CSV = b"number,name\n+14155550100,Ada\n4155550101,Bob\n+14155550100,Cy\n"
SETTINGS = {"name": "June reminders", "agent": "reminders", "carrier": "twilio",
            "start": "false"}


@contextlib.asynccontextmanager
async def campaigns_app(tmp_path: Path, **overrides: object) -> AsyncIterator[httpx.AsyncClient]:
    write_agent(tmp_path / "agents", AGENT, name="reminders")
    async with TwilioRestServer() as twilio, served(
            tmp_path, twilio_account_sid=SIMULATED_ACCOUNT_SID, twilio_api_base_url=twilio.url,
            **overrides) as client:
        client.server.settings.public_url = client.server.base_url  # type: ignore[attr-defined]
        yield client


async def test_an_upload_with_bad_rows_is_refused_naming_each_line_and_nothing_is_kept(
        tmp_path: Path) -> None:
    async with campaigns_app(tmp_path) as client:
        response = await client.post("/api/campaigns", data=SETTINGS,
                                     files={"contacts": ("list.csv", BAD_CSV, "text/csv")})
        assert response.status_code == 422
        rows = response.json()["rows"]
        assert [r["line"] for r in rows] == [3, 4]
        assert "international format" in rows[0]["message"]
        assert "already on line 2" in rows[1]["message"]
        assert (await client.get("/api/campaigns")).json() == {"campaigns": []}


async def test_each_bad_setting_is_named(tmp_path: Path) -> None:
    async with campaigns_app(tmp_path) as client:
        response = await client.post("/api/campaigns", json={
            "name": "x", "agent": "reminders", "hours_start": "9am", "max_concurrent": 3,
            "calls_per_second": 0, "default_time_zone": "Mars/Base", "carrier": "fax",
            "machine_detection": "leave_message",
            "contacts": [{"number": "+14155550100"}]})
        assert response.status_code == 422
        fields = response.json()["fields"]
        assert set(fields) == {"hours_start", "max_concurrent", "calls_per_second",
                               "default_time_zone", "carrier"}
        assert "max_concurrent_calls (2)" in fields["max_concurrent"]
        unknown = await client.post("/api/campaigns", json={
            "name": "x", "agent": "nobody", "contacts": [{"number": "+14155550100"}]})
        assert unknown.json()["fields"] == {"agent": "no agent named 'nobody' is loaded"}
        voicemail = await client.post("/api/campaigns", json={
            "name": "x", "agent": "reminders", "machine_detection": "leave_message",
            "contacts": [{"number": "+14155550100"}]})
        assert "voicemail_message" in voicemail.json()["fields"]


async def test_a_csv_upload_creates_a_campaign_whose_life_the_api_steers(
        tmp_path: Path) -> None:
    async with campaigns_app(tmp_path) as client:
        created = await client.post("/api/campaigns", data=SETTINGS,
                                    files={"contacts": ("list.csv", GOOD_CSV, "text/csv")})
        assert created.status_code == 201, created.text
        campaign_id = created.json()["id"]
        assert created.json() == {"id": campaign_id, "status": "draft", "contacts": 2}
        [listed] = (await client.get("/api/campaigns")).json()["campaigns"]
        assert (listed["id"], listed["carrier"], listed["contacts"]["pending"]) == \
            (campaign_id, "twilio", 2)
        detail = (await client.get(f"/api/campaigns/{campaign_id}")).json()
        assert [(c["line"], c["number"], c["params"], c["time_zone"])
                for c in detail["contact_list"]] == [
            (2, "+14155550100", {"name": "Ada"}, "America/Los_Angeles"),
            (3, "+442071234567", {"name": "Bob"}, "Europe/London")]
        assert detail["from_number"] == "" and detail["progress"] == 0.0
        assert (await client.post(f"/api/campaigns/{campaign_id}/pause")).status_code == 409
        cancelled = await client.post(f"/api/campaigns/{campaign_id}/cancel")
        assert cancelled.json() == {"id": campaign_id, "status": "cancelled"}
        assert (await client.post(f"/api/campaigns/{campaign_id}/resume")).status_code == 409
        assert (await client.post("/api/campaigns/nope/pause")).status_code == 404
        assert (await client.post(f"/api/campaigns/{campaign_id}/restart")).status_code == 404
        assert (await client.get("/api/campaigns/nope")).status_code == 404


async def test_an_upload_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    big = b"number,note\n" + b"+14155550100," + b"x" * (3 * 1024 * 1024) + b"\n"
    async with campaigns_app(tmp_path) as client:
        response = await client.post("/api/campaigns", data=SETTINGS,
                                     files={"contacts": ("big.csv", big, "text/csv")})
        assert response.status_code == 413
        as_json = await client.post("/api/campaigns", content=b'{"csv": "' + big + b'"}',
                                    headers={"content-type": "application/json"})
        assert as_json.status_code == 413


async def test_the_admin_creates_a_campaign_from_an_uploaded_csv_and_steers_it(
        tmp_path: Path) -> None:
    async with campaigns_app(tmp_path) as client:
        form_page = await client.get("/campaigns/new")
        assert form_page.status_code == 200 and 'name="contacts"' in form_page.text
        token = csrf_of(form_page.text)
        refused = await client.post("/campaigns/new", data={**SETTINGS, "csrf_token": token},
                                    files={"contacts": ("list.csv", BAD_CSV, "text/csv")})
        assert refused.status_code == 422
        assert "line 3:" in refused.text and "line 4:" in refused.text
        created = await client.post("/campaigns/new", data={**SETTINGS, "csrf_token": token},
                                    files={"contacts": ("list.csv", GOOD_CSV, "text/csv")})
        assert created.status_code == 303
        page_url = created.headers["location"].split("?")[0]
        page = await client.get(page_url)
        assert "June reminders" in page.text and "+442071234567" in page.text
        assert re.search(r'id="status">draft<', page.text)
        listing = await client.get("/campaigns")
        assert page_url in listing.text
        started = await client.post(page_url + "/cancel", data={"csrf_token": token})
        assert started.status_code == 303
        assert re.search(r'id="status">cancelled<', (await client.get(page_url)).text)
        forged = await client.post(page_url + "/resume", data={"csrf_token": "forged"})
        assert forged.status_code == 403


async def test_the_api_needs_the_key_from_another_machine(tmp_path: Path) -> None:
    write_agent(tmp_path / "agents", AGENT, name="reminders")
    async with remote(tmp_path, api_key="k" * 32) as client:
        assert (await client.get("/api/campaigns")).status_code == 401
        keyed = await client.get("/api/campaigns", headers={"X-API-Key": "k" * 32})
        assert keyed.status_code == 200
