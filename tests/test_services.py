"""The PostgreSQL and Redis tests cannot pass by skipping under ``make test``: a server
that cannot be reached fails them there, and elsewhere skips them saying why."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import services


def test_an_unreachable_redis_fails_under_make_test_and_skips_with_its_reason_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(services, "REDIS_URL", "redis://127.0.0.1:9/0")
    monkeypatch.setattr(services.shutil, "which", lambda name: None)
    problem = services.ensure_redis()
    assert problem is not None
    assert "Redis not reachable on 127.0.0.1:6379" in problem and "not installed" in problem

    monkeypatch.setenv(services.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="Redis: Redis not reachable"):
        services.unavailable("Redis", problem)
    monkeypatch.delenv(services.REQUIRE_ENV)
    with pytest.raises(pytest.skip.Exception, match="Redis: Redis not reachable"):
        services.unavailable("Redis", problem)


def test_an_unreachable_postgresql_names_what_was_tried(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.setattr(services, "PG_CONNINFO", "host=127.0.0.1 port=9 user=postgres "
                                                 "dbname=test connect_timeout=1")
    monkeypatch.setattr(services, "POSTGRESQL_CONFIGS", tmp_path / "no-postgresql")
    problem = services.ensure_postgres()
    assert problem is not None
    assert "PostgreSQL not reachable on 127.0.0.1:5432" in problem
    assert "is PostgreSQL installed?" in problem
    monkeypatch.setenv(services.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="fails rather than skips"):
        services.unavailable("PostgreSQL", problem)
