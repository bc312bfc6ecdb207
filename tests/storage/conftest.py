"""Storage tests run against both databases (the shared fixtures in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Engine

from agentplatform.storage.writer import CallWriter


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest) -> Engine:
    return request.getfixturevalue(f"{request.param}_engine")


@pytest.fixture
async def writer(engine: Engine) -> AsyncIterator[CallWriter]:
    w = CallWriter(engine)
    w.start()
    yield w
    await w.stop()
