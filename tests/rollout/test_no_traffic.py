"""The controller on the real online analysis of a JSON-lines log, with no traffic on the route.

A log the analysis reads but that holds nothing of the route is *readable*: the step is
inconclusive for want of requests and fails after its grace, saying how few it saw. A log that no
gateway has written yet cannot be read: that fails after ``evidence_timeout``, in the analysis's
own words, so the two are never confused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from modelyard.rollout import schema as s
from modelyard.rollout.status import describe
from modelyard.validation.logread import open_source
from modelyard.validation.online import OnlineAnalysis
from tests.gateway.support import wait_for
from tests.rollout.support import World
from tests.validation.online_support import line


@contextlib.contextmanager
def analysis_of(log: Path) -> Iterator[OnlineAnalysis]:
    """The control plane's analysis, reading ``log`` from its first line in its own thread."""
    analysis = OnlineAnalysis(open_source(str(log), start="start"))
    analysis.start()
    try:
        yield analysis
    finally:
        analysis.stop()


def test_a_route_without_traffic_on_a_read_log_fails_for_too_few_requests(
    world: World, tmp_path: Path
) -> None:
    log = tmp_path / "inference.jsonl"
    log.write_bytes(line("r1", "v1", project="other", model="route") + b"\n")  # another route's
    with analysis_of(log) as analysis:
        assert wait_for(lambda: analysis.records == 1)
        world.controller = world.another_controller(analysis)
        world.start()
        world.clock.advance(10)  # the mirror step's time: nothing of mail/spam came
        world.controller.tick()
        assert world.latest().state == s.RUNNING
        assert describe(world.controller, world.latest())["evidence"] == "ok"
        world.clock.advance(30.5)  # 3x the step more, and still nothing
        world.controller.tick()
    latest = world.latest()
    assert latest.state == s.ROLLED_BACK
    assert "inconclusive after 40s: too few requests: 0 seen, 100 needed (min_requests)" in latest.reason
    assert "evidence_lost" not in world.events()


def test_a_log_no_gateway_has_written_is_unreadable_and_the_failure_says_why(
    world: World, tmp_path: Path
) -> None:
    log = tmp_path / "inference.jsonl"  # no gateway has opened it
    with analysis_of(log) as analysis:
        assert wait_for(lambda: analysis.read_failures > 0)
        world.controller = world.another_controller(analysis)
        world.start()
        world.controller.tick()
        assert world.events() == ["started", "evidence_lost"]
        why = f"the analysis cannot read the gateway's log: no inference log at {log} yet"
        assert why in describe(world.controller, world.latest())["evidence"]
        world.clock.advance(61)
        world.controller.tick()
    latest = world.latest()
    assert latest.state == s.ROLLED_BACK
    assert f"the gates could not be read for 61s ({why})" in latest.reason
