"""``modelyard deploy status | history | promote | abort | pause | resume | retry`` with a rollout."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.control.app import build_control_app
from modelyard.registry import ControlSettings, Registry
from modelyard.rollout import schema as s
from modelyard.rollout.controller import Controller
from modelyard.rollout.store import RolloutRecord, RolloutStore
from modelyard.routing.store import RouteStore
from tests.deploy.support import RecordingTarget
from tests.rollout.support import CANARY, FakeEvidence, deploy_file, log_in_full, rollout_values
from tests.support import serve_in_thread

# The CLI's variables, the evidence the controller reads, and the controller (its loop ticks).
Env = tuple[dict[str, str], FakeEvidence, Controller]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    settings = ControlSettings(home=tmp_path / "home", analysis_log="none")
    with Registry(settings) as registry:
        app_ = build_control_app(settings, registry, target=RecordingTarget())
        evidence = FakeEvidence()
        app_.state.rollouts.evidence = evidence
        log_in_full(RouteStore(registry.engine))
        with serve_in_thread(app_) as at:
            variables = {"MODELYARD_CONTROL_URL": f"http://{at}", "MODELYARD_TOKEN": "", "COLUMNS": "200"}
            yield variables, evidence, app_.state.rollouts


def test_status_history_and_the_actions(env: Env, tmp_path: Path) -> None:
    variables, evidence, _ = env
    runner = CliRunner()
    path = tmp_path / "deploy.yaml"
    path.write_text(deploy_file(CANARY))
    applied = runner.invoke(app, ["deploy", "apply", str(path)], env=variables)
    assert applied.exit_code == 0, applied.output
    assert "rollout #1: v2 from v1 (canary, 4 steps" in applied.output
    evidence.add("v2", mirrored=40, compared=40, agreed=39)
    evidence.add("v1", requests=200)
    status = runner.invoke(app, ["deploy", "status"], env=variables)
    assert status.exit_code == 0, status.output
    assert "#1 mail/spam: v2 from v1 (canary), running, step 1/4: mirror 100% for 10s, " in status.output
    assert "evidence: 40 requests, 100 needed (inconclusive)" in status.output
    assert "agreement      0.975 >= 0.98     fail" in status.output
    assert (
        "p99_ratio          1 <= 1.5      inconclusive (a p99 needs 100 latencies each side: 40 and 200"
        in (status.output)
    )
    paused = runner.invoke(app, ["deploy", "pause", "mail/spam", "--reason", "a look"], env=variables)
    assert paused.exit_code == 0, paused.output
    assert "(canary), paused, step 1/4: mirror 100% for 10s, paused" in paused.output
    again = runner.invoke(app, ["deploy", "pause", "mail/spam"], env=variables)
    assert again.exit_code == 2
    assert "already paused" in again.output
    aborted = runner.invoke(app, ["deploy", "abort", "mail/spam"], env=variables)
    assert "(canary), aborted: aborted by hand" in aborted.output
    history = runner.invoke(app, ["deploy", "history"], env=variables)
    lines = history.output.splitlines()
    assert lines[0].startswith("  rollout #1 mail/spam v2 aborted by ")
    assert f"paused by {getpass.getuser()}" in lines[1]
    assert "paused by hand: a look" in lines[1]
    assert lines[-1].startswith("#1 ")  # the apply, oldest


def test_an_action_on_a_model_without_a_rollout_is_one_line(env: Env) -> None:
    variables, _, _ = env
    result = CliRunner().invoke(app, ["deploy", "promote", "mail/spam"], env=variables)
    assert result.exit_code == 2
    assert "mail/spam has no rollout" in result.output
    bad = CliRunner().invoke(app, ["deploy", "promote", "spam"], env=variables)
    assert bad.exit_code == 2
    assert "expected PROJECT/MODEL" in bad.output


def test_retry_starts_an_aborted_rollout_again(env: Env, tmp_path: Path) -> None:
    variables, _, _ = env
    runner = CliRunner()
    path = tmp_path / "deploy.yaml"
    path.write_text(deploy_file(CANARY))
    assert runner.invoke(app, ["deploy", "apply", str(path)], env=variables).exit_code == 0
    early = runner.invoke(app, ["deploy", "retry", "mail/spam"], env=variables)
    assert early.exit_code == 2
    assert "rollout #1 of mail/spam is running, not ended: abort it first to start over" in early.output
    assert runner.invoke(app, ["deploy", "abort", "mail/spam"], env=variables).exit_code == 0
    retried = runner.invoke(app, ["deploy", "retry", "mail/spam", "--reason", "a new flag"], env=variables)
    assert retried.exit_code == 0, retried.output
    assert "#2 mail/spam: v2 from v1 (canary), running, step 1/4: mirror 100% for 10s, " in retried.output
    history = runner.invoke(app, ["deploy", "history"], env=variables).output.splitlines()
    assert history[0].startswith(f"  rollout #2 mail/spam v2 started by {getpass.getuser()} at ")
    assert ": retry of rollout #1 (aborted) by hand: a new flag; canary: mirror 100% for 10s" in history[0]
    nothing = runner.invoke(app, ["deploy", "retry", "mail/other"], env=variables)
    assert nothing.exit_code == 2
    assert "mail/other has no rollout to retry" in nothing.output


def test_status_and_history_miss_no_rollout_and_no_transition(env: Env, tmp_path: Path) -> None:
    variables, _, controller = env
    runner = CliRunner()
    path = tmp_path / "deploy.yaml"
    path.write_text(deploy_file(CANARY))
    assert runner.invoke(app, ["deploy", "apply", str(path)], env=variables).exit_code == 0
    controller.stop_loop()  # the rollouts below are written by hand: the controller must not act on them
    with RolloutStore.open(ControlSettings(home=tmp_path / "home")) as store:

        def move(record: RolloutRecord, event: str, state: str) -> RolloutRecord:
            return store.change(
                record, at=datetime.now(UTC), actor="bob", event=event, reason=event, state=state
            )

        def new(model: str) -> RolloutRecord:
            return store.create(rollout_values(model), at=datetime.now(UTC), actor="bob", reason="go")

        long = new("ham")  # #2
        for _ in range(150):  # 300 transitions: more than a listing shows of one rollout
            long = move(move(long, "paused", s.PAUSED), "resumed", s.RUNNING)
        move(long, "aborted", s.ABORTED)
        for i in range(60):  # more newer rollouts than a listing's page
            move(new(f"m{i}"), "aborted", s.ABORTED)
    status = runner.invoke(app, ["deploy", "status"], env=variables)
    assert "#1 mail/spam: v2 from v1 (canary), running, step 1/4" in status.output  # the oldest
    assert "#62 mail/m59: v2 from v1 (canary), aborted: aborted" in status.output
    history = runner.invoke(app, ["deploy", "history", "--limit", "500"], env=variables).output
    assert "  rollout #2 mail/ham v2 started by bob" in history  # 302 transitions back
    assert "  rollout #1 mail/spam v2 started by " in history  # 63 rollouts back
    assert len(history.splitlines()) == 1 + 1 + 302 + 60 * 2  # the apply and every transition
    newest = runner.invoke(app, ["deploy", "history", "--limit", "3"], env=variables).output.splitlines()
    assert [line.split()[1:5] for line in newest] == [
        ["#62", "mail/m59", "v2", "aborted"],
        ["#62", "mail/m59", "v2", "started"],
        ["#61", "mail/m58", "v2", "aborted"],
    ]
