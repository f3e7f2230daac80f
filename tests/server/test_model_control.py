"""Model control (``POST /v2/repository/models/{m}/load|unload``) is off unless the server enables
it, and then needs its bearer token.

Unloading makes a replica unready for good (it stays live, so it is never restarted); it used to be
open to anyone who could reach the port.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pydantic
import pytest
from starlette.testclient import TestClient

from modelyard.server import Settings
from modelyard.server.app import build_app
from tests import models
from tests.server.serving import ROOT, infer, post, serving
from tests.support import CONTROL_HEADERS, CONTROL_TOKEN

UNLOAD = "/v2/repository/models/doubler/unload"
LOAD = "/v2/repository/models/doubler/load"


@pytest.fixture
def closed() -> Iterator[TestClient]:
    with TestClient(build_app(Settings(), [models.Doubler])) as client:
        yield client


@pytest.fixture
def guarded() -> Iterator[TestClient]:
    settings = Settings(model_control=True, model_control_token=CONTROL_TOKEN)
    with TestClient(build_app(settings, [models.Doubler])) as client:
        yield client


def test_model_control_is_off_by_default_403_saying_how_to_enable_it(closed: TestClient) -> None:
    for path in (UNLOAD, LOAD, "/v2/repository/models/nope/unload"):  # no 404 to probe names with
        for headers in ({}, CONTROL_HEADERS):
            answer = closed.post(path, headers=headers)
            assert answer.status_code == 403, answer.text
            assert answer.json()["kind"] == "forbidden"
            assert "--model-control" in answer.json()["error"]
            assert "MODELYARD_MODEL_CONTROL_TOKEN" in answer.json()["error"]
    assert closed.get("/v2/models/doubler/ready").status_code == 200  # nothing was unloaded
    # Reading the repository's index stays open: it changes nothing.
    assert closed.post("/v2/repository/index").status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        f"Basic {CONTROL_TOKEN}",
        "Bearer wrong-token-of-some-length",
        f"Bearer {CONTROL_TOKEN}x",
    ],
)
def test_enabled_it_needs_the_token_401_otherwise(guarded: TestClient, authorization: str | None) -> None:
    headers = {} if authorization is None else {"authorization": authorization}
    for path in (UNLOAD, "/v2/repository/models/nope/unload"):
        answer = guarded.post(path, headers=headers)
        assert answer.status_code == 401, answer.text
        assert answer.json()["kind"] == "unauthenticated"
        assert answer.json()["field"] == "authorization"
        assert answer.headers["www-authenticate"] == 'Bearer realm="modelyard"'
    assert guarded.get("/v2/models/doubler/ready").status_code == 200


def test_enabled_with_the_token_it_unloads_and_loads(guarded: TestClient) -> None:
    assert guarded.post(UNLOAD, headers=CONTROL_HEADERS).status_code == 200
    assert guarded.get("/v2/models/doubler/ready").status_code == 503
    lower_scheme = {"authorization": f"bearer {CONTROL_TOKEN}"}  # the scheme is case-insensitive
    assert guarded.post(LOAD, headers=lower_scheme).status_code == 200
    assert guarded.get("/v2/models/doubler/ready").status_code == 200
    assert guarded.post("/v2/repository/models/nope/load", headers=CONTROL_HEADERS).status_code == 404


def test_enabling_it_without_a_token_or_with_a_short_one_is_refused_without_echoing_it() -> None:
    with pytest.raises(pydantic.ValidationError, match="model_control_token"):
        Settings(model_control=True)
    with pytest.raises(pydantic.ValidationError) as caught:
        Settings(model_control=True, model_control_token="hunter2")
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(Settings(model_control_token="hunter2-but-longer-now"))


@pytest.mark.slow
def test_the_cli_reads_the_token_from_the_environment(tmp_path: Path) -> None:
    env = {"MODELYARD_MODEL_CONTROL_TOKEN": CONTROL_TOKEN}
    with serving(tmp_path, "--model-control", env=env) as server:
        path = "/v2/repository/models/picky/unload"
        assert post(server.port, path, b"")[0] == 401
        assert post(server.port, path, b"", CONTROL_HEADERS)[0] == 200
        assert post(server.port, path.replace("unload", "load"), b"", CONTROL_HEADERS)[0] == 200
        infer(server.port)
    with serving(tmp_path, env=env) as server:  # the token alone does not turn it on
        assert post(server.port, "/v2/repository/models/picky/unload", b"", CONTROL_HEADERS)[0] == 403


@pytest.mark.slow
def test_the_cli_refuses_model_control_without_a_token() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MODELYARD_MODEL_CONTROL_TOKEN"}
    argv = [
        sys.executable,
        "-m",
        "modelyard.cli.main",
        "serve",
        f"{ROOT}/tests/models.py:Picky",
        "--model-control",
    ]
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "model_control_token" in result.stderr
