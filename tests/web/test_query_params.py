"""Query parameters of the calls screens and the calls API: nonsense gets a 400 that
names the parameter, never a 500, a 422 or a silently unbounded answer."""

from __future__ import annotations

import contextlib

import httpx
import pytest

from agentplatform.app import create_app
from agentplatform.web.params import MAX_LIMIT

from .conftest import settings_for


@contextlib.asynccontextmanager
async def local_client(tmp_path):
    app = create_app(settings_for(tmp_path))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000),
                                        raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000",
                                     follow_redirects=False) as client:
            yield client


NONSENSE_NUMBERS = ["1e20", "99999999999999999999", "-1", "0x10", "abc", "", " 5", "1.5",
                    "²", "+3"]


@pytest.mark.parametrize("value", NONSENSE_NUMBERS)
async def test_a_nonsense_page_is_a_400_naming_it(tmp_path, value):
    async with local_client(tmp_path) as client:
        response = await client.get("/calls", params={"page": value})
        assert response.status_code == 400, response.text
        assert "page" in response.json()["detail"]


@pytest.mark.parametrize("name", ["limit", "offset"])
@pytest.mark.parametrize("value", NONSENSE_NUMBERS)
async def test_a_nonsense_limit_or_offset_is_a_400_naming_it(tmp_path, name, value):
    async with local_client(tmp_path) as client:
        response = await client.get("/api/calls", params={name: value})
        assert response.status_code == 400, response.text
        assert name in response.json()["detail"]


async def test_the_calls_api_answers_at_most_the_cap(tmp_path):
    async with local_client(tmp_path) as client:
        assert (await client.get("/api/calls", params={"limit": MAX_LIMIT})).status_code == 200
        too_many = await client.get("/api/calls", params={"limit": MAX_LIMIT + 1})
        assert too_many.status_code == 400
        assert f"1..{MAX_LIMIT}" in too_many.json()["detail"]
        assert (await client.get("/api/calls", params={"limit": "0"})).status_code == 400
        assert (await client.get("/api/calls")).status_code == 200


@pytest.mark.parametrize("params", [
    {"since": "yesterday"}, {"until": "2024-13-01"}, {"since": "2024-05-02", "until": "2024-05-01"},
    {"reason": "exploded"}, {"number": "1" * 200}, {"agent": "a" * 500},
])
async def test_nonsense_filters_on_the_calls_screen_are_a_400_naming_them(tmp_path, params):
    async with local_client(tmp_path) as client:
        response = await client.get("/calls", params=params)
        assert response.status_code == 400, response.text
        detail = response.json()["detail"]
        assert any(name in detail for name in params), detail


async def test_sensible_filters_on_the_calls_screen_are_answered(tmp_path):
    async with local_client(tmp_path) as client:
        for params in ({"page": "1"}, {"page": "3"}, {"reason": "live"}, {"reason": "busy"},
                       {"since": "2024-05-01", "until": "2024-05-01"}, {"number": "+1555"},
                       {"agent": "front-desk"}, {"reason": ""}):
            assert (await client.get("/calls", params=params)).status_code == 200, params

