"""The deploy API over HTTP (control-plane app on port 0) and ``modelyard deploy`` against it.

The target is the recording stand-in (tests/deploy/support.py): these tests are about the API, the
history and the CLI; the local backend's tests and the end-to-end apply test run real replicas.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.control.app import build_control_app
from modelyard.deploy.client import DeployClient
from modelyard.errors import Conflict, ErrorKind, InvalidInput, ModelyardError, NotFound
from modelyard.registry import ControlSettings, Registry
from tests.deploy.support import RecordingTarget
from tests.support import serve_in_thread

FILE = """deployments:
- project: mail
  model: spam
  versions:
  - version: v1
    spec: {uri: spam@production, replicas: 2, weight: 80}
  - version: v2
    spec: {uri: spam/7, replicas: 1, weight: 20, batching: {max_batch_size: 32}}
"""
SHIFTED = FILE.replace("weight: 80", "weight: 50").replace("weight: 20", "weight: 50")


@pytest.fixture
def control(tmp_path: Path) -> Iterator[tuple[str, RecordingTarget]]:
    settings = ControlSettings(home=tmp_path / "home")
    target = RecordingTarget()
    with (
        Registry(settings) as registry,
        serve_in_thread(build_control_app(settings, registry, target=target)) as at,
    ):
        yield f"http://{at}", target


def test_diff_apply_history_status_and_rollback_over_http(control: tuple[str, RecordingTarget]) -> None:
    url, target = control
    with DeployClient(url, user="alice") as client:
        diffed = client.diff(FILE, "deploy.yaml")
        assert diffed["summary"] == "2 to add, 0 to update, 0 to delete, 0 unchanged"
        assert " ADD        | v1" in diffed["plan"]
        first = client.apply(FILE, "deploy.yaml")
        assert first["ok"], first
        assert ("mail", "spam", "v2") in target.running
        assert client.diff(FILE)["empty"] is True  # applied: nothing left to do
        second = client.apply(SHIFTED, "deploy.yaml")
        assert second["ok"]
        assert "0 to add, 2 to update" in second["summary"]
        history = client.history()
        assert [(r["id"], r["status"], r["user"]) for r in history] == [
            (2, "applied", "alice"),
            (1, "applied", "alice"),
        ]
        assert client.record(1)["file_text"] == FILE
        back = client.rollback(1)
        assert back["ok"]
        assert client.history()[0]["source"] == "rollback to #1"
        assert client.diff(FILE)["empty"] is True
        status = client.status()
        assert status["current"]["id"] == 3
        assert {r["version"] for r in status["replicas"]} == {"v1", "v2"}


def test_a_failed_apply_is_recorded_and_answers_422(control: tuple[str, RecordingTarget]) -> None:
    url, target = control
    target.fail.add(("mail", "spam", "v2"))
    with DeployClient(url) as client:
        outcome = client.apply(FILE, "deploy.yaml")
        assert outcome["ok"] is False
        assert "mail/spam version v2" in outcome["error"]
        assert any("FAILED" in line for line in outcome["log"])
        [record] = client.history()
        assert (record["status"], record["message"]) == ("failed", outcome["error"])
        assert client.diff(FILE)["summary"].startswith("2 to add")  # nothing counts as applied


def test_bad_files_and_ids_are_400s_naming_the_place(control: tuple[str, RecordingTarget]) -> None:
    url, _ = control
    with DeployClient(url) as client:
        with pytest.raises(InvalidInput) as caught:
            client.apply("deployments:\n- project: mail\n  model: spam\n  versions: []\n", "bad.yaml")
        assert "bad.yaml:4" in caught.value.message
        with pytest.raises(NotFound):
            client.rollback(42)
        assert client.history() == []  # a refused file is never recorded


def test_cli_validate_diff_against_and_render_work_offline(tmp_path: Path) -> None:
    runner = CliRunner()
    new, old = tmp_path / "deploy.yaml", tmp_path / "old.yaml"
    new.write_text(SHIFTED)
    old.write_text(FILE)
    ok = runner.invoke(app, ["deploy", "validate", str(new)])
    assert ok.exit_code == 0, ok.output
    assert "ok (1 deployments, 2 versions)" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(FILE.replace("replicas: 1", "replicas: -1"))
    refused = runner.invoke(app, ["deploy", "validate", str(bad)])
    assert refused.exit_code == 2
    assert "bad.yaml:8: deployments[0].versions[1].spec.replicas" in refused.output
    diffed = runner.invoke(app, ["deploy", "diff", str(new), "--against", str(old)])
    assert diffed.exit_code == 0
    assert "- weight: 80" in diffed.output
    assert "+ weight: 50" in diffed.output
    missing = runner.invoke(app, ["deploy", "render", str(new)])
    assert missing.exit_code == 2
    assert "has no image" in missing.output
    out = tmp_path / "k8s.yaml"
    rendered = runner.invoke(
        app,
        [
            "deploy",
            "render",
            str(new),
            "--image",
            "v1=img:1",
            "--image",
            "mail/spam/v2=img:2",
            "-o",
            str(out),
        ],
    )
    assert rendered.exit_code == 0, rendered.output
    assert "image: img:2" in out.read_text()
    assert "kind: Deployment" in out.read_text()


def test_cli_apply_status_history_against_the_control_plane(
    control: tuple[str, RecordingTarget], tmp_path: Path
) -> None:
    url, _ = control
    path = tmp_path / "deploy.yaml"
    path.write_text(FILE)
    runner = CliRunner()
    applied = runner.invoke(app, ["deploy", "apply", str(path), "--control-url", url])
    assert applied.exit_code == 0, applied.output
    assert "apply #1: done (2 to add" in applied.output
    assert "PROJECT: mail MODEL: spam" in applied.output
    again = runner.invoke(app, ["deploy", "diff", str(path), "--control-url", url])
    assert "0 to add, 0 to update, 0 to delete, 2 unchanged" in again.output
    history = runner.invoke(app, ["deploy", "history", "--control-url", url])
    assert "#1" in history.output
    assert "applied" in history.output
    status = runner.invoke(app, ["deploy", "status", "--control-url", url])
    assert "applied: #1" in status.output


def test_a_live_route_set_shows_in_diff_and_apply_says_it_overwrites_it(
    control: tuple[str, RecordingTarget], tmp_path: Path
) -> None:
    url, _ = control
    path = tmp_path / "deploy.yaml"
    path.write_text(FILE)
    env = {"MODELYARD_CONTROL_URL": url, "MODELYARD_REGISTRY_URL": "", "COLUMNS": "200"}
    runner = CliRunner()
    assert runner.invoke(app, ["deploy", "apply", str(path)], env=env).exit_code == 0
    moved = runner.invoke(app, ["route", "set", "mail/spam", "v1=50", "v2=50"], env=env)
    assert moved.exit_code == 0, moved.output
    drift = "mail/spam: weights changed live since the last apply (v1 80 -> 50, v2 20 -> 50)"
    diffed = runner.invoke(app, ["deploy", "diff", str(path)], env=env)
    assert diffed.exit_code == 0, diffed.output
    assert diffed.stdout.startswith("DRIFT (the live state differs from the last apply):\n")
    assert f"  {drift}; apply overwrites them\n" in diffed.stdout
    assert "- weight: 50" in diffed.stdout
    assert "0 to add, 2 to update, 0 to delete, 0 unchanged" in diffed.stdout
    with DeployClient(url) as client:
        assert client.diff(FILE)["empty"] is False
        assert client.diff(FILE)["drift"] == [f"{drift}; apply overwrites them"]
    applied = runner.invoke(app, ["deploy", "apply", str(path)], env=env)
    assert applied.exit_code == 0, applied.output
    assert f"  {drift}; apply overwrites them" in applied.stdout
    assert "routing: v1=80, v2=20" in applied.stdout
    shown = runner.invoke(app, ["route", "show", "mail/spam", "--json"], env=env)
    assert {v["version"]: v["weight"] for v in json.loads(shown.stdout)["versions"]} == {"v1": 80, "v2": 20}
    with DeployClient(url) as client:
        assert client.history(1)[0]["plan"]["drift"] == [f"{drift}; apply overwrites them"]
        assert client.diff(FILE)["empty"] is True  # nothing drifted any more


def test_cli_says_when_no_control_plane_answers(tmp_path: Path) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text(FILE)
    result = CliRunner().invoke(app, ["deploy", "apply", str(path), "--control-url", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert "cannot reach the control plane at http://127.0.0.1:9" in result.output
    assert "modelyard up" in result.output


def test_registry_versions_a_deployment_uses_cannot_be_deleted_until_it_stops(tmp_path: Path) -> None:
    settings = ControlSettings(home=tmp_path / "home")
    artifact = tmp_path / "spam.bin"
    artifact.write_bytes(b"weights")
    with Registry(settings) as registry:
        registry.push(artifact, name="spam")  # version 1
        registry.push(artifact, name="spam")  # version 2
        registry.set_alias("spam", "production", 1)
        app = build_control_app(settings, registry, target=RecordingTarget())
        with serve_in_thread(app) as at, DeployClient(f"http://{at}") as client:
            uses_both = FILE.replace("spam/7", "spam/2")
            assert client.apply(uses_both)["ok"]
            assert [u.consumer for u in registry.list_usages("spam", 1)] == ["deployment/mail/spam/v1"]
            assert [u.consumer for u in registry.list_usages("spam", 2)] == ["deployment/mail/spam/v2"]
            with pytest.raises(Conflict, match="in use by deployment/mail/spam/v2"):
                registry.delete_version("spam", 2)
            only_v1 = "\n".join(FILE.splitlines()[:6]).replace("weight: 80", "weight: 100") + "\n"
            assert client.apply(only_v1)["ok"]
            assert registry.list_usages("spam", 2) == []  # v2 left the file: released
            registry.delete_version("spam", 2)
            assert [u.consumer for u in registry.list_usages("spam", 1)] == ["deployment/mail/spam/v1"]


PROBE_ENV = FILE.replace(
    "spec: {uri: spam@production, replicas: 2, weight: 80}",
    "spec: {uri: spam@production, replicas: 2, weight: 80,"
    " server: {env: {PYTHONWARNINGS: 'ignore::antigravity.x', BROWSER: 'touch pwned #%s'}}}",
)


def test_interpreter_control_env_is_refused_before_anything_runs(
    control: tuple[str, RecordingTarget],
) -> None:
    # The probe's apply set these two and ran a shell command as the replica's user, then got 422.
    url, target = control
    with DeployClient(url) as client:
        for call in (client.diff, client.apply):
            with pytest.raises(InvalidInput) as caught:
                call(PROBE_ENV, "deploy.yaml")
            assert caught.value.field == "deployments[0].versions[0].spec.server.env.PYTHONWARNINGS"
            assert "deploy.yaml:6: deployments[0].versions[0].spec.server.env.BROWSER" in caught.value.message
            assert "--allow-env PYTHONWARNINGS" in caught.value.message
        assert target.calls == []
        assert client.history() == []


def test_a_local_path_is_refused_unless_the_control_plane_allows_it(tmp_path: Path) -> None:
    code = tmp_path / "model.py"
    code.write_text("raise SystemExit('never imported')\n")
    local = FILE.replace("spam@production", f"{code}:Model")
    for allowed in (False, True):
        settings = ControlSettings(home=tmp_path / f"home-{allowed}", allow_local_paths=allowed)
        target = RecordingTarget()
        with (
            Registry(settings) as registry,
            serve_in_thread(build_control_app(settings, registry, target=target)) as at,
            DeployClient(f"http://{at}") as client,
        ):
            if allowed:
                assert client.apply(local)["ok"]
                assert target.running[("mail", "spam", "v1")].uri == f"{code}:Model"
                continue
            with pytest.raises(InvalidInput, match="--allow-local-paths") as caught:
                client.apply(local)
            assert caught.value.field == "deployments[0].versions[0].spec.uri"
            assert target.calls == []


def test_allowed_env_lets_an_admin_name_a_variable(tmp_path: Path) -> None:
    settings = ControlSettings(home=tmp_path / "home", allowed_env=["PYTHONWARNINGS"])
    target = RecordingTarget()
    with (
        Registry(settings) as registry,
        serve_in_thread(build_control_app(settings, registry, target=target)) as at,
        DeployClient(f"http://{at}") as client,
    ):
        with pytest.raises(InvalidInput) as caught:  # BROWSER was not allowed
            client.diff(PROBE_ENV)
        assert caught.value.field == "deployments[0].versions[0].spec.server.env.BROWSER"
        only_warnings = PROBE_ENV.replace(", BROWSER: 'touch pwned #%s'", "")
        assert client.apply(only_warnings)["ok"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: &r [*r]", "a recursive alias"),
        ("[" * 20_000 + "]" * 20_000, "nested more than 64 levels deep"),
        ("deployments:\n" + "- 0\n" * 200_000, "more than 50000 YAML nodes"),
    ],
)
def test_hostile_yaml_is_a_fast_400_over_rest(
    control: tuple[str, RecordingTarget], text: str, message: str
) -> None:
    url, _ = control
    with DeployClient(url) as client:
        for call in (client.diff, client.apply):
            with pytest.raises(InvalidInput, match=message):
                call(text, "deploy.yaml")


def test_a_file_over_the_limit_is_a_413_over_rest(control: tuple[str, RecordingTarget]) -> None:
    url, _ = control
    with DeployClient(url) as client, pytest.raises(ModelyardError) as caught:
        client.diff("deployments: []\n" + "#" * (1024 * 1024), "deploy.yaml")
    assert caught.value.kind is ErrorKind.TOO_LARGE
    # Refused while the body is read: the server never holds more than the limit.
    assert caught.value.message == "request body of 1048592 bytes exceeds the limit of 1048576 bytes"


@pytest.mark.timeout(30)
def test_the_cli_refuses_hostile_files_with_a_message_not_a_crash(tmp_path: Path) -> None:
    runner = CliRunner()
    deep, huge = tmp_path / "deep.yaml", tmp_path / "huge.yaml"
    deep.write_text("deployments: " + "[" * 20_000 + "]" * 20_000)
    with huge.open("wb") as file:
        file.truncate(100 * 1024 * 1024)
    for args in (["validate"], ["diff"], ["apply"], ["diff", "--against", str(deep)]):
        url = [] if args[0] == "validate" or len(args) > 1 else ["--control-url", "http://127.0.0.1:9"]
        result = runner.invoke(app, ["deploy", *args[:1], str(deep), *args[1:], *url])
        assert result.exit_code == 2, result.output
        assert f"{deep}:1: nested more than 64 levels deep" in result.output
        result = runner.invoke(app, ["deploy", *args[:1], str(huge), *args[1:], *url])
        assert result.exit_code == 2, result.output
        assert f"{huge}: the deploy file is larger than the limit of 1048576 bytes" in result.output
