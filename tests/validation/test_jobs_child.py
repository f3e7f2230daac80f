"""A validation job runs its models in a child process: a model that hangs, crashes or kills its
process ends its own job in error and nothing else, and a stopping control plane takes the child
with it and queues the job again."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.control.settings import ControlSettings
from modelyard.registry import Registry
from modelyard.validation.job_store import JobStore
from tests.validation.jobs_support import models, python_version, runner, wait_for_job, with_production


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path / "home"))  # the child unpacks packages there
    return models(tmp_path)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with Registry(ControlSettings(home=tmp_path / "home")) as opened:
        yield opened


def _with_misbehaving(
    registry: Registry, files: dict[str, Path], tmp_path: Path, body: str
) -> tuple[JobStore, Path]:
    """spam/1 production; spam/2 the misbehaving model and spam/3 a good one, each with a job queued."""
    store = with_production(registry, files, triggers=[])
    package, marker = python_version(tmp_path, body)
    registry.push(package, name="spam")
    registry.push(files["good"], name="spam")
    store.run_now("spam", 2)
    store.run_now("spam", 3)
    return store, marker


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_hanging_model_ends_in_error_at_its_deadline_and_the_runner_goes_on(
    registry: Registry, files: dict[str, Path], tmp_path: Path
) -> None:
    store, marker = _with_misbehaving(registry, files, tmp_path, "time.sleep(3600)")
    jobs = runner(registry, store, poll_s=0.05, lease_s=1.0, deadline_s=4.0)
    jobs.start()
    try:
        hung = wait_for_job(store, "spam", 2)
        after = wait_for_job(store, "spam", 3)
    finally:
        jobs.stop()
    assert (hung.status, hung.attempts) == ("error", 1)
    assert hung.reason == "ran past its deadline of 4 s (validation_job_timeout_s): stopped"
    assert _gone(int(marker.read_text()))
    assert registry.list_validations("spam", 2) == []  # no verdict: nothing recorded
    assert after.status == "passed", after.log


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("os._exit(3)", "the validation process exited with code 3 before it gave a verdict"),
        ("os._exit(0)", "the validation process exited with code 0 before it gave a verdict"),
        (
            "os.kill(os.getpid(), signal.SIGKILL)",
            "the validation process was killed by SIGKILL (out of memory?) before it gave a verdict",
        ),
        (
            "os.kill(os.getpid(), signal.SIGSEGV)",
            "the validation process was killed by SIGSEGV before it gave a verdict",
        ),
    ],
)
def test_a_model_that_ends_its_process_fails_its_job_and_nothing_else(
    registry: Registry, files: dict[str, Path], tmp_path: Path, body: str, reason: str
) -> None:
    store, _ = _with_misbehaving(registry, files, tmp_path, body)
    jobs = runner(registry, store)
    crashed = jobs.run_once()  # in this process: were the model run here, the test would end here
    assert crashed is not None
    assert (crashed.version, crashed.status, crashed.attempts, crashed.reason) == (2, "error", 1, reason)
    assert f"error: {reason}" in (crashed.log or "")
    following = jobs.run_once()
    assert following is not None
    assert (following.version, following.status) == (3, "passed")


def test_a_stopping_control_plane_kills_the_child_and_queues_the_job_again(
    registry: Registry, files: dict[str, Path], tmp_path: Path
) -> None:
    store, marker = _with_misbehaving(registry, files, tmp_path, "time.sleep(3600)")
    jobs = runner(registry, store, poll_s=0.05)
    jobs.start()
    try:
        pid = _wait_for_pid(marker)
    finally:
        jobs.stop()
    assert _gone(pid)
    job = next(job for job in store.list_jobs("spam") if job.version == 2)
    job = store.get_job(job.id)
    assert (job.status, job.attempts) == ("queued", 1)
    assert "the control plane is stopping: back to the queue" in (job.log or "")


def _wait_for_pid(marker: Path) -> int:
    """The child's process id, once its model is inside predict."""
    deadline = time.monotonic() + 30
    while not (marker.exists() and marker.read_text()):
        assert time.monotonic() < deadline, "the model never reached predict"
        time.sleep(0.05)
    return int(marker.read_text())
