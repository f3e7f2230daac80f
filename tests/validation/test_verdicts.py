"""Verdicts recorded on registry versions, and alias moves that require a passing one: on the local
database (SQLite and PostgreSQL) and over the REST API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from modelyard.control.app import build_control_app
from modelyard.control.settings import ControlSettings
from modelyard.errors import Conflict, NotFound
from modelyard.registry import Registry, RegistryClient
from modelyard.registry.types import NewValidation, ValidationGate
from tests.support import serve_in_thread


def _verdict(outcome: str, **fields: Any) -> NewValidation:
    gate = ValidationGate(gate="min_agreement", outcome=outcome, value=0.99, threshold=0.98, reason="r")  # type: ignore[arg-type]
    base: dict[str, Any] = {
        "outcome": outcome, "baseline": "spam/1 (spam@production)", "dataset": "rows.npz", "rows": 100,
        "policy": {"min_agreement": 0.98}, "gates": [gate], "figures": {"agreement": 0.99},
    }  # fmt: skip
    return NewValidation.model_validate(base | fields)


def _two_versions(registry: Registry | RegistryClient, tmp_path: Path) -> None:
    for number in (1, 2):
        artifact = tmp_path / f"spam-{number}.bin"
        artifact.write_bytes(f"model {number}".encode())
        registry.push(artifact, name="spam")


@pytest.fixture
def registry(database_settings: ControlSettings) -> Iterator[Registry]:
    with Registry(database_settings) as opened:
        yield opened


def test_an_alias_move_can_require_a_passing_verdict(registry: Registry, tmp_path: Path) -> None:
    _two_versions(registry, tmp_path)
    registry.set_alias("spam", "production", 1)
    with pytest.raises(Conflict, match="no validation verdict") as caught:
        registry.set_alias("spam", "production", 2, require_validation=True)
    assert caught.value.field == "require_validation"
    registry.record_validation("spam", 2, _verdict("fail"))
    with pytest.raises(Conflict, match="did not pass its latest validation: fail against spam/1"):
        registry.set_alias("spam", "production", 2, require_validation=True)
    assert registry.get_alias("spam", "production").version == 1  # refused: nothing moved

    passed = registry.record_validation("spam", 2, _verdict("pass", user="ana"))
    assert (passed.name, passed.version, passed.outcome, passed.user) == ("spam", 2, "pass", "ana")
    assert passed.gates[0].gate == "min_agreement"
    assert registry.set_alias("spam", "production", 2, require_validation=True).version == 2

    registry.record_validation("spam", 2, _verdict("inconclusive"))  # the latest verdict counts
    with pytest.raises(Conflict, match="inconclusive"):
        registry.set_alias("spam", "staging", 2, require_validation=True)
    registry.set_alias("spam", "staging", 2)  # without the flag nothing is checked
    assert [v.outcome for v in registry.list_validations("spam", 2)] == ["inconclusive", "pass", "fail"]
    assert [v.outcome for v in registry.list_validations("spam", 2, limit=1)] == ["inconclusive"]
    assert registry.list_validations("spam", 1) == []


def test_verdicts_go_with_their_version(registry: Registry, tmp_path: Path) -> None:
    _two_versions(registry, tmp_path)
    registry.record_validation("spam", 2, _verdict("pass"))
    registry.delete_version("spam", 2)
    with pytest.raises(NotFound):
        registry.list_validations("spam", 2)
    with pytest.raises(NotFound):
        registry.record_validation("spam", 7, _verdict("pass"))


def test_verdict_figures_must_be_plain_json() -> None:
    with pytest.raises(ValueError, match="NaN or Infinity"):
        _verdict("pass", figures={"max_abs_diff": float("inf")})
    with pytest.raises(ValueError, match="NUL"):
        _verdict("pass", figures={"labels": ["a\x00"]})
    deep: dict[str, Any] = {}
    for _ in range(12):
        deep = {"x": deep}
    with pytest.raises(ValueError, match="nested deeper"):
        _verdict("pass", policy=deep)


def test_verdicts_over_rest(tmp_path: Path) -> None:
    settings = ControlSettings(home=tmp_path / "home")
    with (
        Registry(settings) as registry,
        serve_in_thread(build_control_app(settings, registry)) as address,
        RegistryClient(f"http://{address}") as client,
    ):
        _two_versions(client, tmp_path)
        client.set_alias("spam", "production", 1)
        with pytest.raises(Conflict, match="no validation verdict"):
            client.set_alias("spam", "production", 2, require_validation=True)
        recorded = client.record_validation("spam", 2, _verdict("pass", user="ana"))
        assert registry.list_validations("spam", 2) == [recorded]  # the server's core has it
        assert client.list_validations("spam", 2) == [recorded]
        assert client.set_alias("spam", "production", 2, require_validation=True).version == 2


def test_rest_refuses_bad_verdicts_with_400(tmp_path: Path) -> None:
    settings = ControlSettings(home=tmp_path / "home")
    with TestClient(build_control_app(settings), base_url="http://127.0.0.1") as http:
        artifact = http.post("/api/v1/artifacts", content=b"model").json()
        http.post("/api/v1/models/spam/versions", json={"sha256": artifact["sha256"]})
        path = "/api/v1/models/spam/versions/1/validations"
        good = _verdict("pass").model_dump(mode="json")
        assert http.post(path, json=good).status_code == 201
        for bad in ({"outcome": "maybe"}, {"figures": {"x": "a\x00"}}, {"rows": -1}, {"extra": 1}):
            response = http.post(path, json=good | bad)
            assert response.status_code == 400, (bad, response.text)
            assert response.json()["kind"] == "invalid_input"
        nan = http.post(path, content=b'{"outcome": "pass", "baseline": "b", "dataset": "d", "rows": 1,'
                        b' "figures": {"x": NaN}}', headers={"content-type": "application/json"})  # fmt: skip
        assert nan.status_code == 400, nan.text
        assert http.get(path, params={"limit": "x"}).status_code == 400
        assert [v["outcome"] for v in http.get(path).json()] == ["pass"]
        moved = http.put(
            "/api/v1/models/spam/aliases/production", json={"version": 1, "require_validation": True}
        )
        assert moved.status_code == 200, moved.text
