"""``RouteFile``: the routing table from a watched JSON/YAML file or folder (``--routes``), on its
own, behind a running gateway, and through ``modelyard gateway serve``'s flag."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.errors import InvalidInput
from modelyard.gateway import workers
from modelyard.gateway.settings import GatewaySettings
from modelyard.routing.route_file import RECHECK_S, RouteFile
from modelyard.routing.table import ModelRoute, VersionRoute, route_to_dict
from tests.gateway.support import GatewayWorld, predict, wait_for

A, B = "http://127.0.0.1:9001", "http://127.0.0.1:9002"
SPAM = {
    "project": "mail",
    "model": "spam",
    "timeout_s": 5.0,
    "log_payload": "full",
    "log_sample": 0.5,
    "versions": [
        {
            "version": "v1",
            "weight": 90,
            "mirror": False,
            "mirror_fraction": 1.0,
            "target": "",
            "replicas": [A],
        },
        {
            "version": "v2",
            "weight": 10,
            "mirror": True,
            "mirror_fraction": 0.25,
            "target": "x",
            "replicas": [B],
        },
    ],
}
HAM_YAML = """\
- project: mail
  model: ham
  versions:
  - {version: v1, weight: 1, replicas: ["http://127.0.0.1:9003"]}
"""


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def weights(source: RouteFile, model: str = "spam") -> dict[str, int]:
    route = source.load().routes[("mail", model)]
    return {version.version: version.weight for version in route.versions}


def test_a_route_as_route_to_dict_writes_it(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    path.write_text(json.dumps(SPAM))
    source = RouteFile(path)
    assert source.revision() == 1
    table = source.load()
    assert table.revision == 1
    assert route_to_dict(table.routes[("mail", "spam")]) == SPAM


@pytest.mark.parametrize(
    "text",
    [
        HAM_YAML,  # a list
        "routes:\n" + "".join(f"  {line}\n" for line in HAM_YAML.splitlines()),  # as GET /-/routing
        json.dumps(
            {
                "revision": 12,
                "routes": [
                    {
                        "project": "mail",
                        "model": "ham",
                        "versions": [{"version": "v1", "weight": 1, "replicas": ["http://127.0.0.1:9003"]}],
                    }
                ],
            }
        ),
        "---\n" + HAM_YAML.replace("- ", "", 1).replace("\n  ", "\n") + "---\n",  # YAML documents
    ],
)
def test_the_forms_a_file_may_take_with_defaults_filled_in(tmp_path: Path, text: str) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    (route,) = RouteFile(path).load().routes.values()
    assert route == ModelRoute(
        "mail", "ham", (VersionRoute("v1", weight=1, replicas=("http://127.0.0.1:9003",)),)
    )


def test_a_folder_like_a_configmap_volume(tmp_path: Path) -> None:
    """Kubernetes keeps the files in a hidden, timestamped folder, links ``..data`` to it and each
    visible name to ``..data/<name>``; an update makes a new folder and swaps ``..data`` at once."""
    folder = tmp_path / "routes"
    folder.mkdir()

    def publish(generation: str, files: dict[str, str]) -> None:
        data = folder / f"..{generation}"
        data.mkdir()
        for name, text in files.items():
            (data / name).write_text(text)
        (folder / "..data_tmp").symlink_to(data.name)
        os.replace(folder / "..data_tmp", folder / "..data")
        for name in files:
            if not (folder / name).is_symlink():
                (folder / name).symlink_to(f"..data/{name}")

    publish("2024_01", {"mail-spam.json": json.dumps(SPAM), "mail-ham.yaml": HAM_YAML})
    (folder / "notes.txt").write_text("not a routes file")
    source = RouteFile(folder)
    assert sorted(source.load().routes) == [("mail", "ham"), ("mail", "spam")]
    changed = {**SPAM, "versions": [{**SPAM["versions"][0], "weight": 1}]}
    publish("2024_02", {"mail-spam.json": json.dumps(changed), "mail-ham.yaml": HAM_YAML})
    assert source.revision() == 2
    assert weights(source) == {"v1": 1}


def test_a_change_is_read_and_a_touch_is_not_a_new_revision(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    path.write_text(json.dumps(SPAM))
    clock = Clock()
    source = RouteFile(path, clock=clock)
    assert (source.revision(), weights(source)) == (1, {"v1": 90, "v2": 10})
    os.utime(path, ns=(1, 1))  # the stat changed, the content did not
    assert source.revision() == 1
    path.write_text(json.dumps(SPAM).replace('"weight": 90', '"weight": 70'))
    assert (source.revision(), weights(source)) == (2, {"v1": 70, "v2": 10})


def test_an_edit_that_keeps_every_stat_is_read_within_a_second(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    path.write_text(json.dumps(SPAM))
    clock = Clock()
    source = RouteFile(path, clock=clock)
    assert source.revision() == 1
    before = path.stat()
    path.write_text(json.dumps(SPAM).replace('"weight": 90', '"weight": 80'))  # same size, same inode
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    clock.now += RECHECK_S / 2
    assert source.revision() == 1  # the stats say nothing changed: not read yet
    clock.now += RECHECK_S
    assert (source.revision(), weights(source)) == (2, {"v1": 80, "v2": 10})


def test_a_bad_file_keeps_the_last_good_table_until_it_is_fixed(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    path.write_text(json.dumps(SPAM))
    source = RouteFile(path)
    good = source.load()
    path.write_text(json.dumps(SPAM).replace('"weight": 90', '"weight": -1'))
    for _ in range(2):  # and again on the next poll, while the file stays bad
        with pytest.raises(InvalidInput) as raised:
            source.revision()
        assert raised.value.field == "versions[0].weight"
        assert raised.value.message == f"{path}: versions[0].weight: must be an integer from 0 to 1000000"
        assert source.load() is good
    path.write_text(json.dumps(SPAM))  # back as it was: no new revision
    assert source.revision() == 1
    path.unlink()
    with pytest.raises(InvalidInput, match="cannot read the routes: No such file"):
        source.revision()
    assert source.load() is good
    path.write_text(json.dumps({**SPAM, "log_sample": 0.1}))
    assert source.revision() == 2


@pytest.mark.parametrize(
    ("name", "text", "field", "message"),
    [
        ("r.json", "", "routes", "r.json: the file is empty (write [] for a table with no routes)"),
        ("r.json", '[{"project": "mail",\n "model": }]', "routes", "r.json:2: invalid JSON: Expecting value"),
        ("r.json", '{"project": "a", "project": "b"}', "routes", "r.json: duplicate key 'project'"),
        ("r.yaml", "- project: mail\n  project: ham\n", "routes", "duplicate key 'project'"),
        ("r.yaml", "- [unclosed\n", "routes", "r.yaml:2: invalid YAML"),
        ("r.yaml", "just text\n", "route", "must be a route, a list of routes, or a mapping"),
        ("r.yaml", "routes: {}\n", "routes", "routes: must be a list of routes"),
        ("r.yaml", "[{model: spam}]", "[0].project", "[0].project: is required"),
        ("r.yaml", "[{project: mail, model: spam, weights: {}}]", "[0].weights", "unknown field"),
        ("r.yaml", "[{project: 'mail box', model: spam}]", "[0].project", "must be 1-63 characters"),
        (
            "r.yaml",
            "[{project: mail, model: spam, versions: [{version: 2}]}]",
            "[0].versions[0].version",
            "must be a string: quote it (2 reads as a number)",
        ),
        (
            "r.yaml",
            "[{project: mail, model: spam, versions: [{version: v1}, {version: v1}]}]",
            "[0].versions[1].version",
            "version 'v1' is listed twice",
        ),
        (
            "r.yaml",
            "[{project: mail, model: spam, versions: [{version: v1, replicas: [localhost:1]}]}]",
            "[0].versions[0].replicas[0]",
            "must look like http://host:port",
        ),
        (
            "r.yaml",
            "[{project: mail, model: spam, versions: [{version: v1, mirror_fraction: 0}]}]",
            "[0].versions[0].mirror_fraction",
            "must be a number with 0 < value <= 1",
        ),
        (
            "r.yaml",
            "[{project: mail, model: spam, versions: [{version: v1, mirror: yes please}]}]",
            "[0].versions[0].mirror",
            "must be true or false",
        ),
        ("r.yaml", "[{project: mail, model: spam, timeout_s: 0}]", "[0].timeout_s", "above 0"),
        ("r.yaml", "[{project: mail, model: spam, log_payload: all}]", "[0].log_payload", "hash"),
        (
            "r.yaml",
            "[{project: mail, model: spam}, {project: mail, model: spam}]",
            "[1]",
            "the route mail/spam is listed twice (also at ",
        ),
    ],
)
def test_errors_name_the_file_and_the_field(
    tmp_path: Path, name: str, text: str, field: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InvalidInput) as raised:
        RouteFile(path).revision()
    assert raised.value.field == field
    assert str(path) in raised.value.message
    assert message in raised.value.message


def test_a_route_in_two_files_of_a_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps(SPAM))
    (tmp_path / "b.json").write_text(json.dumps([SPAM]))
    with pytest.raises(InvalidInput, match=r"b.json: \[0\]: the route mail/spam is listed twice .*a.json"):
        RouteFile(tmp_path).revision()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidInput, match="the folder holds no"):
        RouteFile(empty).revision()


# -- behind a running gateway -----------------------------------------------------------------------


def test_a_gateway_routes_by_the_file_and_follows_its_changes(
    env: GatewayWorld, client: httpx.Client, tmp_path: Path
) -> None:
    one, two = env.replica("one"), env.replica("two")
    path = tmp_path / "routes.yaml"

    def replace(text: str) -> None:
        # As editors and kubelet do: a poll between truncate and write would see an empty file.
        (tmp_path / "routes.tmp").write_text(text)
        (tmp_path / "routes.tmp").replace(path)

    def write(url: str) -> None:
        replace(
            f"- {{project: mail, model: spam, versions: [{{version: v1, weight: 1, replicas: [{url}]}}]}}\n"
        )

    write(one.url)
    gateway = env.gateway(routes_file=path)  # built as `modelyard gateway serve --routes` builds it
    url = gateway.url + "/projects/mail/models/spam:predict"
    assert predict(client, url).json()["replica"] == "one"
    write(two.url)
    assert wait_for(lambda: predict(client, url).json()["replica"] == "two")
    replace("- {project: mail, model: spam, versions: [{version: v1, weight: lots}]}\n")
    assert wait_for(lambda: "error" in client.get(gateway.admin_url + "/-/routing").json())
    routing = client.get(gateway.admin_url + "/-/routing").json()
    assert routing["error"] == f"{path}: [0].versions[0].weight: must be an integer from 0 to 1000000"
    assert routing["revision"] == 2
    assert predict(client, url).json()["replica"] == "two"  # the last good table still routes
    assert client.get(gateway.url + "/v2/health/ready").status_code == 200
    write(one.url)
    assert wait_for(lambda: "error" not in client.get(gateway.admin_url + "/-/routing").json())
    assert predict(client, url).json()["replica"] == "one"


# -- the CLI flag --------------------------------------------------------------------------------------


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[GatewaySettings]:
    """What `modelyard gateway serve` would have run the gateway with (nothing is started)."""
    calls: list[GatewaySettings] = []

    def run_gateway(settings: GatewaySettings) -> int:
        calls.append(settings)
        return 0

    monkeypatch.setattr(workers, "run_gateway", run_gateway)
    return calls


def serve(tmp_path: Path, *args: str) -> Any:
    env = {
        "MODELYARD_HOME": str(tmp_path / "home"),
        "MODELYARD_REGISTRY_DB": "",
        "MODELYARD_GATEWAY_LOG_SINK": "",
    }
    return CliRunner().invoke(app, ["gateway", "serve", "--log-sink", "none", *args], env=env)


def test_the_flag_reaches_the_settings(tmp_path: Path, served: list[GatewaySettings]) -> None:
    path = tmp_path / "routes.json"
    path.write_text(json.dumps(SPAM))
    result = serve(tmp_path, "--routes", str(path))
    assert result.exit_code == 0, result.output
    (settings,) = served
    assert settings.routes_file == path
    # The workers get their settings as JSON: the path survives the trip.
    assert GatewaySettings.model_validate_json(settings.model_dump_json()).routes_file == path


def test_a_missing_or_malformed_file_is_exit_2_naming_the_flag(
    tmp_path: Path, served: list[GatewaySettings]
) -> None:
    missing = tmp_path / "nope.yaml"
    result = serve(tmp_path, "--routes", str(missing))
    assert result.exit_code == 2
    assert result.stderr.strip() == f"modelyard: --routes: {missing}: no such file or folder"
    bad = tmp_path / "bad.yaml"
    bad.write_text("[{project: mail, model: spam, versions: [{version: v1, wieght: 1}]}]")
    result = serve(tmp_path, "--routes", str(bad))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"modelyard: --routes: {bad}: [0].versions[0].wieght: unknown field")
    assert served == []
