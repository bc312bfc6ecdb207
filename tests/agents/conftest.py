"""Shared fixtures: the real catalog, settings with no provider keys, an empty environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentplatform.catalog import Catalog, load_catalog
from agentplatform.config import Settings


@pytest.fixture
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture
def settings(catalog: Catalog) -> Settings:
    """No platform keys or endpoints, whatever the machine's environment holds."""
    blank = {p.key_setting for p in catalog.providers.values() if p.key_setting}
    blank |= {p.url_setting for p in catalog.providers.values() if p.url_setting}
    return Settings(_env_file=None, **{name: "" for name in blank})


@pytest.fixture
def keyed_settings(catalog: Catalog) -> Settings:
    """Every platform key and endpoint set, so only the rule under test can warn."""
    values = {p.key_setting: "test-key" for p in catalog.providers.values() if p.key_setting}
    values |= {p.url_setting: "https://example.test" for p in catalog.providers.values()
               if p.url_setting}
    return Settings(_env_file=None, **values)


@pytest.fixture
def agents_dir(tmp_path: Path) -> Path:
    path = tmp_path / "agents"
    path.mkdir()
    return path
