"""``EngineStore``: the engine handling every plane's store inherits (routes, deploy history,
rollouts, tokens, validation jobs): who disposes of the engine, and what a refused value becomes."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, event, text

from modelyard.control.db import EngineStore, create_engine_for
from modelyard.control.settings import ControlSettings
from modelyard.errors import InvalidInput


def _disposals(engine: Engine) -> list[Engine]:
    seen: list[Engine] = []
    event.listen(engine, "engine_disposed", seen.append)
    return seen


def test_a_store_disposes_only_of_its_own_engine(database_settings: ControlSettings) -> None:
    with EngineStore.open(database_settings) as own:
        disposed = _disposals(own.engine)
    assert disposed == [own.engine]

    shared = create_engine_for(database_settings.resolved_database_url())
    try:
        disposed = _disposals(shared)
        with EngineStore(shared) as store:
            assert store.engine is shared
        assert disposed == []
    finally:
        shared.dispose()


def test_a_value_the_database_refuses_is_invalid_input(postgres_url: str) -> None:
    store = EngineStore(create_engine_for(postgres_url), owns_engine=True)
    refused = pytest.raises(InvalidInput, match=r"^the database refused a value: invalid input")
    with store, refused, store._write() as conn:
        conn.execute(text("SELECT CAST('seven' AS INTEGER)"))
