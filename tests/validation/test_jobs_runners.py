"""Validation jobs between control planes, on SQLite and PostgreSQL: a job is claimed once however
many runners race for it, and a job whose control plane stopped or died runs again."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.control.settings import ControlSettings
from modelyard.registry import Registry
from modelyard.validation import jobs
from modelyard.validation.job_store import JobStore
from tests.validation.jobs_support import models, runner, wait_for_job, with_production


@pytest.fixture
def registry(database_settings: ControlSettings) -> Iterator[Registry]:
    with Registry(database_settings) as opened:
        yield opened


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return models(tmp_path)


def _queued(registry: Registry, files: dict[str, Path], jobs: int) -> JobStore:
    store = with_production(registry, files, triggers=[])
    registry.push(files["good"], name="spam")
    for _ in range(jobs):
        store.run_now("spam", 2)
    return store


def test_racing_claims_take_each_job_once(registry: Registry, files: dict[str, Path]) -> None:
    store = _queued(registry, files, 30)
    taken: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    start = threading.Barrier(len(taken))

    def claim_all(name: str) -> None:
        start.wait()
        while (job := store.claim(name, 30)) is not None:
            taken[name].append(job.id)

    threads = [threading.Thread(target=claim_all, args=(name,)) for name in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    every = [job for ids in taken.values() for job in ids]
    assert sorted(every) == sorted(job.id for job in store.list_jobs("spam"))  # each once, none lost
    assert all(job.status == "running" and job.attempts == 1 for job in store.list_jobs("spam"))


def test_two_control_planes_run_every_job_once(registry: Registry, files: dict[str, Path]) -> None:
    store = _queued(registry, files, 4)
    runners = [runner(registry, store, name, poll_s=0.05) for name in ("cp-1", "cp-2")]
    for each in runners:
        each.start()
    try:
        deadline = time.monotonic() + 60
        while any(job.status in ("queued", "running") for job in store.list_jobs("spam")):
            assert time.monotonic() < deadline, store.list_jobs("spam")
            time.sleep(0.05)
    finally:
        for each in runners:
            each.stop()
    jobs = store.list_jobs("spam")
    assert [(job.status, job.attempts) for job in jobs] == [("passed", 1)] * 4
    assert len(registry.list_validations("spam", 2)) == 4  # one verdict per job: none ran twice


def test_a_restarted_control_plane_queues_its_running_job_again(
    registry: Registry, files: dict[str, Path]
) -> None:
    store = _queued(registry, files, 1)
    claimed = store.claim("cp-1", 600)  # then cp-1 is killed: its lease would run for 10 minutes
    assert claimed is not None
    again = runner(registry, store, "cp-1", poll_s=0.05)
    again.start()  # the same control plane, restarted
    try:
        job = wait_for_job(store, "spam", 2)
    finally:
        again.stop()
    assert (job.status, job.attempts) == ("passed", 2)
    assert "restarted; queued again" in (job.log or "")


def test_a_dead_control_planes_job_runs_elsewhere_once_its_lease_lapses(
    registry: Registry, files: dict[str, Path]
) -> None:
    store = _queued(registry, files, 1)
    claimed_at = time.monotonic()
    assert store.claim("cp-dead", 1.5) is not None  # long enough to outlast a loaded machine's pause
    other = runner(registry, store, "cp-2", lease_s=0.2)
    assert other.run_once() is None  # the lease still runs: nobody else touches the job
    time.sleep(max(0.0, claimed_at + 1.6 - time.monotonic()))
    job = other.run_once()
    assert job is not None
    assert (job.status, job.attempts) == ("passed", 2)
    assert "stopped; queued again" in (job.log or "")


def test_a_job_given_up_after_too_many_interruptions(registry: Registry, files: dict[str, Path]) -> None:
    store = _queued(registry, files, 1)
    for _ in range(3):
        assert store.claim("cp-1", 600) is not None
        store.requeue_runner("cp-1", max_attempts=3)
    (job,) = store.list_jobs("spam")
    assert (job.status, job.attempts) == ("error", 3)
    assert "3 times; given up" in job.reason


def test_a_stopping_control_plane_puts_its_job_back(registry: Registry, files: dict[str, Path]) -> None:
    store = _queued(registry, files, 1)
    stopping = runner(registry, store, "cp-1")
    claimed = store.claim("cp-1", 30)
    assert claimed is not None
    stopping.stop()  # asked to stop: the job ends at its first batch of rows
    stopping.run_job(claimed)
    job = store.get_job(claimed.id)
    assert job.status == "queued"
    assert "the control plane is stopping: back to the queue" in (job.log or "")
    assert registry.list_validations("spam", 2) == []


def test_a_stopping_control_plane_loads_no_model_for_its_job(
    registry: Registry, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _queued(registry, files, 1)
    fetched: list[str] = []
    monkeypatch.setattr(jobs.Registry, "fetch", lambda self, ref: fetched.append(ref))
    stopping = runner(registry, store, "cp-1")
    claimed = store.claim("cp-1", 30)
    assert claimed is not None
    stopping.stop()  # asked to stop while the dataset is read: no version is fetched or loaded
    stopping.run_job(claimed)
    assert store.get_job(claimed.id).status == "queued"
    assert fetched == []
