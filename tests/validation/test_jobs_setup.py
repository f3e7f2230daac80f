"""A validation setup is checked whole before it is stored: every bad field is a 400 naming it; and
the CLI sets, shows, runs and lists, on the local database that a control plane watches."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.control.app import build_control_app
from modelyard.control.settings import ControlSettings
from modelyard.errors import InvalidInput
from modelyard.registry import Registry
from modelyard.validation.job_store import JobStore
from modelyard.validation.setup import check_dataset_host
from tests.validation.jobs_support import models, runner

URL = "/api/v1/models/spam/validation"


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    with Registry(ControlSettings(home=tmp_path / "home")) as registry:
        registry.push(models(tmp_path)["base"], name="spam")
        with TestClient(
            build_control_app(registry.settings, registry), base_url="http://127.0.0.1"
        ) as client:
            yield client


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"dataset": "rows.npz"}, "dataset", "relative path"),
        ({"dataset": "/data/rows.txt"}, "dataset", "suffix"),
        ({"dataset": "nosuch://bucket/rows.npz"}, "dataset", "scheme 'nosuch' is not allowed"),
        ({"dataset": "http://data.example.com/rows.csv"}, "dataset", "never plain http"),
        ({"dataset": "file:///d/rows.npz"}, "dataset", "scheme 'file' is not allowed"),
        # The fragment is never sent: the suffix is read on the path, which has none here.
        ({"dataset": "https://data.example.com/latest#.csv"}, "dataset", "suffix"),
        ({"dataset": "https://data.example.com/latest?as=.csv"}, "dataset", "suffix"),
        ({"dataset": "https://169.254.169.254/creds.csv"}, "dataset", "metadata"),
        ({"dataset": "https://metadata.google.internal/x.csv"}, "dataset", "metadata"),
        ({"dataset": "https://[::ffff:a9fe:a9fe]/x.csv"}, "dataset", "metadata"),
        ({"dataset": "/d/rows.npz", "triggers": ["on-friday"]}, "triggers", "invalid trigger"),
        ({"dataset": "/d/rows.npz", "triggers": ["alias:production"]}, "triggers", "must differ"),
        ({"dataset": "/d/rows.npz", "baseline": "Prod!"}, "baseline", "invalid alias"),
        ({"dataset": "/d/rows.npz", "triggers": ["alias:"]}, "triggers", "invalid alias"),
        ({"dataset": "/d/rows.npz", "policy": {"min_agreement": 2}}, "min_agreement", "less than or equal"),
        ({"dataset": "/d/rows.npz", "policy": "min_rows: [1"}, "policy", "not valid YAML"),
        ({"dataset": "/d/rows.npz", "extra": 1}, "extra", "Extra inputs"),
    ],
)
def test_a_bad_setup_is_a_400_naming_the_field(
    http: TestClient, body: dict[str, Any], field: str, says: str
) -> None:
    answer = http.put(URL, json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == field
    assert says in answer.json()["error"]
    assert http.get(URL).status_code == 404  # nothing stored


def test_missing_things_are_404_and_running_without_a_setup_409(http: TestClient) -> None:
    assert http.put("/api/v1/models/ham/validation", json={"dataset": "/d/rows.npz"}).status_code == 404
    assert http.get(URL).json()["field"] == "validation"
    assert http.delete(URL).status_code == 404
    assert http.get("/api/v1/validation/jobs/99").status_code == 404
    assert http.get("/api/v1/validation/jobs/x").status_code == 400
    answer = http.post("/api/v1/models/spam/versions/1/validation/run")
    assert (answer.status_code, answer.json()["field"]) == (409, "validation")
    assert http.put(URL, json={"dataset": "/d/rows.npz"}).status_code == 200
    assert http.post("/api/v1/models/spam/versions/7/validation/run").status_code == 404
    assert http.get(f"{URL}/jobs?limit=0").status_code == 400


def _cli(env: dict[str, str], *args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(map(str, args)), env=env)
    return result.exit_code, result.output


def test_the_cli_on_the_local_database(cli_env: dict[str, str], tmp_path: Path) -> None:
    files = models(tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text("min_rows: 100\nmin_agreement: 0.99\n")
    code, out = _cli(cli_env, "registry", "push", files["base"], "--name", "spam", "--alias", "production")
    assert code == 0, out
    set_up = ["registry", "validation", "set", "spam", "--data", files["rows"], "--policy", policy]
    code, out = _cli(cli_env, *set_up, "--promote-to", "production", "--on", "push", "--on", "alias:staging")
    assert code == 0, out
    assert "push, alias:staging" in out
    code, out = _cli(cli_env, "registry", "validation", "show", "spam", "--json")
    assert code == 0, out
    assert '"min_rows": 100' in out

    code, out = _cli(cli_env, "registry", "push", files["flip"], "--name", "spam", "--alias", "staging")
    assert code == 0, out
    settings = ControlSettings(home=Path(cli_env["MODELYARD_HOME"]))
    with Registry(settings) as registry:  # a control plane on that database
        job = runner(registry, JobStore(registry.engine)).run_once()
        assert job is not None
        assert registry.get_alias("spam", "production").version == 1
    code, out = _cli(cli_env, "registry", "validation", "jobs", "spam")
    assert code == 0, out
    assert "failed" in out
    assert "skipped" in out
    code, out = _cli(cli_env, "registry", "validation", "job", str(job.id))
    assert code == 0, out
    assert "verdict fail, recorded on spam/2" in out

    code, out = _cli(cli_env, "registry", "validation", "run", "spam", "2")
    assert (code, out.split(" for ")[0]) == (0, f"queued job {job.id + 2}")
    code, out = _cli(cli_env, "registry", "validation", "clear", "spam")
    assert code == 0, out
    code, out = _cli(cli_env, "registry", "validation", "show", "spam")
    assert (code, out.strip()) == (2, "modelyard: model 'spam' has no validation setup")
    code, out = _cli(cli_env, "registry", "validation", "set", "spam", "--data", "x.npz", "--on", "later")
    assert code == 2
    assert "invalid trigger 'later'" in out


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("https://127.0.0.1/rows.csv", "is a loopback address (127.0.0.1)"),
        ("https://0x7f000001/rows.csv", "is a loopback address (127.0.0.1)"),  # any spelling resolves
        ("https://localhost:8443/rows.csv", "is a loopback address"),
        ("https://[::1]/rows.csv", "is a loopback address (::1)"),
        ("https://10.1.2.3/rows.csv", "is a private address (10.1.2.3)"),
        ("https://100.64.0.1/rows.csv", "is a private address (100.64.0.1)"),
        ("https://0.0.0.0/rows.csv", "is a loopback address (0.0.0.0)"),
    ],
)
def test_a_dataset_on_the_control_planes_own_networks_is_not_fetched(uri: str, says: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(says)) as refused:
        check_dataset_host(uri)
    assert "allow_private_datasets" in refused.value.message
    check_dataset_host(uri, allow_private=True)  # a control plane that allows it


def test_a_name_resolving_to_link_local_is_refused_even_when_private_hosts_are_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    check_dataset_host("https://8.8.8.8/rows.csv")  # a global address: fetched

    def resolve(host: str, *args: object, **kwargs: object) -> list[tuple[Any, ...]]:
        assert host == "data.example.com"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 443))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with pytest.raises(InvalidInput, match="link-local or cloud metadata address") as refused:
        check_dataset_host("https://data.example.com/rows.csv", allow_private=True)
    assert "allow_private_datasets" not in refused.value.message
