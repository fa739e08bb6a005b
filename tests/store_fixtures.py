"""Token stores for tests: the sql plugin on SQLite (the embedded default) and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from credenza.config import Config
from credenza.plugins.sql import SqlTokenStore
from tests.pg_fixtures import Postgres


def make_store(url: str | None, data_dir: Path, **settings: object) -> SqlTokenStore:
    table = {"credenza": {"data_dir": str(data_dir), "plugins": ["sql"]},
             "plugins": {"sql": {**({"url": url} if url else {}), **settings}}}
    config = Config.from_mapping(table)
    store = SqlTokenStore(config.section("sql"))
    store.credenza_token_store(config)
    return store


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str | None, Path]]:
    if request.param == "postgresql":
        postgres: Postgres = request.getfixturevalue("postgres")
        yield postgres.database(), tmp_path
    else:
        yield None, tmp_path  # the default: a SQLite file in the data directory


@pytest.fixture
def store(backend: tuple[str | None, Path]) -> Iterator[SqlTokenStore]:
    made = make_store(*backend)
    yield made
    made.close()
