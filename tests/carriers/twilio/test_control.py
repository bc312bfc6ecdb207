"""REST call control: the request Twilio would get, and what its answers mean."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

import orjson
import pytest
from twilio.http import HttpClient
from twilio.http.response import Response

from agentplatform.carriers.twilio.control import TwilioCallControl
from agentplatform.config import Settings
from agentplatform.errors import CarrierError

ACCOUNT = "AC" + "0" * 32
CALL = "CA" + "1" * 32


@dataclass
class Sent:
    method: str
    uri: str
    data: dict[str, Any]
    auth: tuple[str, str] | None


class FakeHttp(HttpClient):
    """Records each request and answers with a canned response."""

    def __init__(self, status: int = 200, body: dict[str, Any] | None = None) -> None:
        super().__init__(logging.getLogger("fake-twilio-http"), is_async=False)
        self.status = status
        self.body = body if body is not None else {"sid": CALL, "account_sid": ACCOUNT, "status": "completed"}
        self.sent: list[Sent] = []

    def request(self, method: str, uri: str, params: Any = None, data: Any = None, headers: Any = None,
                auth: Any = None, timeout: Any = None, allow_redirects: bool = False) -> Response:
        self.sent.append(Sent(method, uri, dict(data or {}), auth))
        return Response(self.status, orjson.dumps(self.body).decode())


def control(http: FakeHttp) -> TwilioCallControl:
    return TwilioCallControl(ACCOUNT, "token", http_client=http)


async def test_hang_up_posts_status_completed_to_the_call() -> None:
    http = FakeHttp()
    await control(http).hang_up(CALL)
    [sent] = http.sent
    assert sent.method == "POST"
    assert sent.uri == f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL}.json"
    assert sent.data == {"Status": "completed"}
    assert sent.auth == (ACCOUNT, "token")


async def test_transfer_posts_twiml_that_dials_the_number() -> None:
    http = FakeHttp()
    await control(http).transfer(CALL, "+15550123")
    [sent] = http.sent
    assert sent.uri.endswith(f"/Calls/{CALL}.json")
    assert set(sent.data) == {"Twiml"}
    root = ElementTree.fromstring(sent.data["Twiml"])
    assert root.tag == "Response"
    assert [(child.tag, child.text) for child in root] == [("Dial", "+15550123")]


async def test_hang_up_with_a_message_speaks_it_then_hangs_up() -> None:
    http = FakeHttp()
    await control(http).hang_up(CALL, say="Sorry, please call again later.")
    [sent] = http.sent
    root = ElementTree.fromstring(sent.data["Twiml"])
    assert [(child.tag, child.text) for child in root] == [
        ("Say", "Sorry, please call again later."), ("Hangup", None)]


@pytest.mark.parametrize("body", [
    {"code": 20404, "message": "The requested resource was not found", "status": 404},
    {"message": "gone"},
])
async def test_a_call_that_no_longer_exists_counts_as_hung_up(body: dict[str, Any]) -> None:
    await control(FakeHttp(404, body)).hang_up(CALL)


async def test_other_failures_become_carrier_errors() -> None:
    with pytest.raises(CarrierError, match="refused"):
        await control(FakeHttp(500, {"code": 20500, "message": "boom", "status": 500})).transfer(CALL, "+1555")


def test_no_control_without_credentials() -> None:
    assert TwilioCallControl.from_settings(Settings(_env_file=None)) is None
    assert TwilioCallControl.from_settings(Settings(_env_file=None, twilio_account_sid=ACCOUNT)) is None
    assert TwilioCallControl.from_settings(
        Settings(_env_file=None, twilio_account_sid=ACCOUNT, twilio_auth_token="t")) is not None
