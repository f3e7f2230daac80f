"""Validation with nobody in the loop: a push (or an alias move) of a model with a setup is
validated by the control plane by itself, the verdict recorded, and on a pass the alias moved."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from modelyard.control.app import build_control_app
from modelyard.control.settings import ControlSettings
from modelyard.registry import Registry
from modelyard.validation.jobs_client import JobsClient
from modelyard.validation.setup import SetupRequest
from modelyard.validation.triggers import poll_triggers
from tests.support import serve_in_thread
from tests.validation.jobs_support import models, runner, wait_for_job, with_production


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return models(tmp_path)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with Registry(ControlSettings(home=tmp_path / "home")) as opened:
        yield opened


def test_a_push_is_validated_by_itself_and_a_pass_moves_production(
    tmp_path: Path, registry: Registry, files: dict[str, Path]
) -> None:
    store = with_production(registry, files, promote_to="production")
    app = build_control_app(registry.settings, registry)
    with serve_in_thread(app):
        # Another process (the CLI on the same local database) pushes: the control plane sees it.
        with Registry(registry.settings) as cli:
            cli.push(files["good"], name="spam", spec=None)
        job = wait_for_job(store, "spam", 2)
    assert (job.status, job.trigger, job.attempts) == ("passed", "push", 1)
    assert job.promotion == "promoted: spam@production -> 2"
    assert "verdict pass, recorded on spam/2" in (job.log or "")
    verdict = registry.list_validations("spam", 2)[0]
    assert (verdict.id, verdict.outcome, verdict.user) == (job.validation_id, "pass", "validator")
    assert verdict.baseline == "spam@production (spam/1)"
    assert verdict.dataset == str(files["rows"])
    assert registry.get_alias("spam", "production").version == 2
    moved = registry.alias_history("spam", "production").items[0]
    assert (moved.from_version, moved.to_version) == (1, 2)
    assert moved.user.startswith("validator")
    assert [j.version for j in store.list_jobs("spam")] == [2]  # spam/1 came before the setup


def test_a_flipped_sign_fails_and_production_stays(registry: Registry, files: dict[str, Path]) -> None:
    store = with_production(registry, files, promote_to="production")
    registry.push(files["flip"], name="spam")
    job = runner(registry, store).run_once()
    assert job is not None
    assert (job.version, job.status, job.promotion) == (2, "failed", None)
    assert job.reason.startswith("min_agreement: 0 < 0.99")
    assert registry.list_validations("spam", 2)[0].outcome == "fail"
    assert registry.get_alias("spam", "production").version == 1


def test_without_a_baseline_the_job_is_inconclusive_and_says_so(
    registry: Registry, files: dict[str, Path]
) -> None:
    store = with_production(registry, files, baseline="champion", promote_to="production")
    registry.push(files["good"], name="spam")
    job = runner(registry, store).run_once()
    assert job is not None
    assert (job.status, job.reason) == ("inconclusive", "no baseline: model 'spam' has no alias 'champion'")
    verdict = registry.list_validations("spam", 2)[0]
    assert (verdict.outcome, verdict.rows, verdict.baseline) == ("inconclusive", 0, "spam@champion (none)")
    assert registry.get_alias("spam", "production").version == 1


def test_a_staging_move_triggers_and_a_push_with_the_alias_runs_once(
    registry: Registry, files: dict[str, Path]
) -> None:
    store = with_production(registry, files, triggers=["alias:staging"])
    registry.push(files["good"], name="spam")
    assert poll_triggers(registry.engine) == []  # a push alone: not a trigger of this setup
    registry.set_alias("spam", "staging", 2, user="bob")
    (queued,) = poll_triggers(registry.engine)
    assert poll_triggers(registry.engine) == []  # seen once, whoever polls again
    job = store.get_job(queued)
    assert (job.version, job.trigger, job.requested_by) == (2, "alias:staging", "bob")

    store.put_setup("spam", SetupRequest(dataset=str(files["rows"]), triggers=["push", "alias:staging"]))
    registry.push(files["flip"], name="spam", aliases=["staging"])
    assert len(poll_triggers(registry.engine)) == 1
    statuses = sorted((j.trigger, j.status) for j in store.list_jobs("spam") if j.version == 3)
    assert statuses == [("alias:staging", "skipped"), ("push", "queued")]


def test_a_pass_does_not_promote_over_a_newer_version(registry: Registry, files: dict[str, Path]) -> None:
    store = with_production(registry, files, promote_to="production", triggers=[])
    registry.push(files["good"], name="spam")
    registry.push(files["base"], name="spam", spec=None)  # the same bytes as production: spam/3
    registry.set_alias("spam", "production", 3)
    store.run_now("spam", 2, "ana")
    job = runner(registry, store).run_once()
    assert job is not None
    assert job.status == "passed"
    assert job.promotion == "not promoted: spam@production already points at 3"
    assert registry.get_alias("spam", "production").version == 3


def test_the_dataset_may_be_a_url(registry: Registry, files: dict[str, Path]) -> None:
    url = "memory://modelyard-tests/holdout.npz"
    with fsspec.open(url, "wb") as out:
        out.write(files["rows"].read_bytes())
    store = with_production(registry, files)
    store.put_setup("spam", SetupRequest(dataset=url))
    registry.push(files["good"], name="spam")
    job = runner(registry, store).run_once()
    assert job is not None
    assert job.status == "passed", job.log
    assert registry.list_validations("spam", 2)[0].dataset == url


def test_a_deleted_version_or_setup_ends_the_job_in_error(registry: Registry, files: dict[str, Path]) -> None:
    store = with_production(registry, files, triggers=[])
    registry.push(files["good"], name="spam")
    store.run_now("spam", 2)
    registry.delete_version("spam", 2)
    job = runner(registry, store).run_once()
    assert job is not None
    assert (job.status, job.reason) == ("error", "model 'spam' has no version 2")


def test_over_rest(registry: Registry, files: dict[str, Path]) -> None:
    registry.push(files["base"], name="spam", aliases=["production"])
    registry.push(files["good"], name="spam")
    with (
        serve_in_thread(build_control_app(registry.settings, registry)) as at,
        JobsClient(f"http://{at}") as api,
    ):
        setup = api.put_setup(
            "spam", SetupRequest(dataset=str(files["rows"]), triggers=[], policy="min_rows: 50")
        )
        assert setup.policy["min_rows"] == 50
        assert api.get_setup("spam") == setup
        queued = api.run_now("spam", 2)
        assert queued.status == "queued"
        job = wait_for_job(api, "spam", 2)  # type: ignore[arg-type]
        assert job.status == "passed"
        assert [j.id for j in api.list_jobs("spam")] == [queued.id]
        assert "verdict pass" in (api.get_job(queued.id).log or "")
        api.clear_setup("spam")


def test_a_dataset_url_on_the_control_planes_own_machine_is_not_fetched(
    registry: Registry, files: dict[str, Path]
) -> None:
    store = with_production(registry, files, dataset="https://127.0.0.1:9/rows.npz")  # accepted when set
    registry.push(files["good"], name="spam")
    job = runner(registry, store).run_once()
    assert job is not None
    assert job.status == "error"
    assert job.reason.startswith("dataset: the host '127.0.0.1' is a loopback address (127.0.0.1)")


@pytest.mark.parametrize(("labels", "says"), [(None, "the data is not FP32"), ("label", "it has 2 columns")])
def test_a_jobs_error_never_shows_the_datas_columns_or_values(
    registry: Registry, files: dict[str, Path], tmp_path: Path, labels: str | None, says: str
) -> None:
    """The dataset may be a file the deployer may not read (the control plane reads it): viewers
    read the job's reason and log, so neither names its columns nor quotes its cells."""
    secret = tmp_path / "secret.csv"
    secret.write_text("AKIAEXAMPLEKEY,s3cr3tname\nwJalrXUtnFEMI,hunter2\n")
    store = with_production(registry, files, dataset=str(secret), labels=labels)
    registry.push(files["good"], name="spam")
    job = runner(registry, store).run_once()
    assert job is not None
    assert job.status == "error"
    assert says in job.reason
    for leaked in ("AKIA", "s3cr3t", "wJalr", "hunter2"):
        assert leaked not in (job.log or "")
