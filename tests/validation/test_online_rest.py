"""The online analysis as the control plane serves it: it follows the gateway's log from the
app's start, and answers GET /api/v1/analysis/{project}/{model} and the Prometheus series."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelyard.control.app import build_control_app
from modelyard.control.settings import ControlSettings
from modelyard.registry import Registry
from modelyard.routing.store import RouteStore
from tests.support import serve_in_thread
from tests.validation.online_support import mirrored_pairs

Live = tuple[str, Path, RouteStore]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    log = tmp_path / "logs" / "inference.jsonl"
    log.parent.mkdir()
    log.touch()
    settings = ControlSettings(home=tmp_path / "home", analysis_log=str(log))
    with Registry(settings) as registry:
        routes = RouteStore(registry.engine)
        routes.set_weights("p", "m", {"v1": 1})
        routes.set_mirror("p", "m", "v2")
        routes.set_options("p", "m", log_payload="full")
        app = build_control_app(settings, registry)
        with serve_in_thread(app) as at:
            api = f"http://{at}/api/v1/analysis"
            deadline = time.monotonic() + 10
            while not httpx.get(f"{api}/p/m").json()["healthy"]:  # reading: the file is open
                assert time.monotonic() < deadline
                time.sleep(0.02)
            yield api, log, routes


def _until_compared(url: str, count: int) -> dict[str, object]:
    deadline = time.monotonic() + 10
    while True:
        body = httpx.get(url).json()
        if body["versions"].get("v2", {}).get("compared") == count:
            return body  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def test_the_view_shows_each_version_and_each_pair(live: Live) -> None:
    api, log, _ = live
    with open(log, "ab") as f:
        f.write(b"".join(x + b"\n" for x in mirrored_pairs(30, flip=True)))
    body = _until_compared(f"{api}/p/m", 30)
    assert body["healthy"] is True
    assert body["log_payload"] == "full"
    assert "refused" not in body
    assert body["source"]["kind"] == "jsonl"  # type: ignore[index]
    assert body["source"]["skipped"] == 0  # type: ignore[index]
    v1, v2 = body["versions"]["v1"], body["versions"]["v2"]  # type: ignore[index]
    assert (v1["requests"], v1["error_rate"], v1["agreement"]) == (30, 0.0, None)
    assert (v2["mirrored"], v2["agreement"], v2["unmatched"]) == (30, 0.0, 0)
    (pair,) = body["pairs"]  # type: ignore[misc]
    assert (pair["baseline"], pair["candidate"], pair["verdict"]) == ("v1", "v2", "fail")
    metrics = httpx.get(f"{api}/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'modelyard_shadow_agreement_ratio{baseline="v1",candidate="v2",route="p/m"} 0.0' in metrics.text
    assert "modelyard_analysis_up 1.0" in metrics.text
    assert "modelyard_analysis_skipped_total 0.0" in metrics.text


def test_a_route_that_logs_no_answers_says_so(live: Live) -> None:
    api, _, routes = live
    routes.set_options("p", "m", log_payload="none")
    body = httpx.get(f"{api}/p/m").json()
    assert body["log_payload"] == "none"
    assert "log_payload" in body["refused"]
    assert body["pairs"] == []


def test_an_unknown_route_is_not_found(live: Live) -> None:
    api, *_ = live
    answer = httpx.get(f"{api}/p/nothing")
    assert answer.status_code == 404
    assert answer.json()["field"] == "model"
    assert httpx.get(f"{api}/p/bad%20name").status_code == 400
