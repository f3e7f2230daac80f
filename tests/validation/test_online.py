"""The online analysis: per-version stats, primary and mirrored answers joined by request id and
compared, the join window bounded whatever the streams do, and the refusal of a blind route."""

from __future__ import annotations

import orjson
import pytest
from prometheus_client import generate_latest

from modelyard.errors import Conflict
from modelyard.routing.table import ModelRoute, VersionRoute
from modelyard.validation.evidence import VersionStats
from modelyard.validation.online import OnlineAnalysis
from modelyard.validation.online_join import JoinLimits
from modelyard.validation.online_metrics import analysis_registry
from modelyard.validation.policy import Policy
from tests.validation.online_support import line, mirrored_pairs, oip_body


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _pair(analysis: OnlineAnalysis, candidate: str) -> dict[str, object]:
    (found,) = [p for p in analysis.pairs("p", "m") if p["candidate"] == candidate]
    return found


def test_agreeing_and_flipped_sign_candidates_are_told_apart() -> None:
    analysis = OnlineAnalysis()
    analysis.feed(mirrored_pairs(50, "good") + mirrored_pairs(50, "flipped", flip=True))
    stats = analysis.stats("p", "m")
    assert stats["v1"].requests == 100
    assert stats["v1"].compared == 0
    assert (stats["good"].mirrored, stats["good"].compared, stats["good"].agreement) == (50, 50, 1.0)
    assert (stats["flipped"].compared, stats["flipped"].agreement) == (50, 0.0)
    good, flipped = _pair(analysis, "good"), _pair(analysis, "flipped")
    assert good["baseline"] == "v1"
    assert good["verdict"] == "pass"
    assert flipped["verdict"] == "fail"
    gates = {g["gate"]: g for g in flipped["gates"]}  # type: ignore[attr-defined]
    assert gates["min_agreement"]["outcome"] == "fail"
    assert flipped["comparison"]["max_abs_diff"] > 1  # type: ignore[index]
    # The pair's worst rows name the requests, so a reviewer can look them up in the log.
    assert flipped["comparison"]["worst"][0]["key"].startswith("r")  # type: ignore[index]


def test_a_mirrored_answer_logged_before_its_primary_still_joins() -> None:
    analysis = OnlineAnalysis()
    pairs = mirrored_pairs(20)
    analysis.feed(pairs[1::2])  # every mirror first
    assert analysis.stats("p", "m")["v2"].compared == 0
    analysis.feed(pairs[0::2])
    assert analysis.stats("p", "m")["v2"].compared == 20
    assert analysis.stats("p", "m")["v2"].agreed == 20


def test_errors_latency_and_failed_answers() -> None:
    analysis = OnlineAnalysis()
    body = oip_body([1.0])
    analysis.feed([
        line("a", "v1", body=body, latency_ms=4.0),
        line("a", "v2", "mirror", body=body, status=500),  # the candidate failed: compared, disagreed
        line("b", "v1", body=body, status=503),  # the baseline failed: nothing to compare
        line("b", "v2", "mirror", body=body),
        line("c", "v1", body='{"error": "bad"}', status=400),  # equal refusals agree
        line("c", "v2", "mirror", body='{"error": "bad input"}', status=400),
        line("d", "v1", status=0),  # the gateway got no answer at all
    ])  # fmt: skip
    v1, v2 = analysis.stats("p", "m")["v1"], analysis.stats("p", "m")["v2"]
    assert (v1.requests, v1.errors, v1.error_rate) == (4, 2, 0.5)
    assert v1.latency_quantile(0.5) == 3.0  # three of four at 3 ms (the buckets' upper bound)
    assert (v2.mirrored, v2.mirror_errors, v2.mirror_error_rate) == (3, 1, 1 / 3)
    assert (v2.compared, v2.agreed) == (2, 1)
    pair = _pair(analysis, "v2")
    assert pair["baseline_failed"] == 1
    assert pair["comparison"]["errors"] == {"baseline": 1, "candidate": 1}  # type: ignore[index]


def test_no_data_is_never_zero_nor_a_pass() -> None:
    analysis = OnlineAnalysis()
    analysis.feed([line("a", "v1", body=oip_body([1.0]))])
    stats = analysis.stats("p", "m")["v1"]
    assert stats.agreement is None
    assert stats.mirror_error_rate is None
    assert stats.latency_quantile(0.99, mirrored=True) is None
    assert analysis.pairs("p", "m") == []
    assert VersionStats().since(VersionStats()) == VersionStats()


def test_hash_payloads_compare_exact_answers_only() -> None:
    analysis = OnlineAnalysis(policy=Policy(abs_tol=1.0))  # a tolerance hashes cannot honour
    same = oip_body([1.0, 2.0], "1")
    analysis.feed([
        line("a", "v1", body=same, payload="hash"),
        line("a", "v2", "mirror", body=same, payload="hash"),
        line("b", "v1", body=same, payload="hash"),
        line("b", "v2", "mirror", body=oip_body([1.0, 2.0000001], "1"), payload="hash"),
    ])  # fmt: skip
    pair = _pair(analysis, "v2")
    assert (pair["compared"], pair["agreed"], pair["hashed"]) == (2, 1, 2)


def test_no_payload_means_blind_pairs_and_a_refused_watch() -> None:
    analysis = OnlineAnalysis()
    analysis.feed([line("a", "v1", payload="none"), line("a", "v2", "mirror", payload="none")])
    assert _pair(analysis, "v2")["blind"] == 1
    assert analysis.stats("p", "m")["v2"].compared == 0
    route = ModelRoute("p", "m", (VersionRoute("v1", 1), VersionRoute("v2", mirror=True)), log_payload="none")
    with pytest.raises(Conflict) as refused:
        analysis.watch(route)
    assert refused.value.field == "log_payload"
    assert "log_payload" in refused.value.message
    analysis.watch(ModelRoute("p", "other", log_payload="hash"))
    assert ("p", "other") in analysis.routes()


def test_answers_of_several_rows_and_tfserving_bodies() -> None:
    analysis = OnlineAnalysis()
    two_rows = oip_body([[1.0, 0.0], [0.0, 1.0]])
    one_off = oip_body([[1.0, 0.0], [1.0, 0.0]])  # the second row's argmax moved
    tf = orjson.dumps({"predictions": [[0.1, 0.9], [0.8, 0.2]]}).decode()
    tf_flipped = orjson.dumps({"predictions": [[0.9, 0.1], [0.8, 0.2]]}).decode()
    analysis.feed([
        line("a", "v1", body=two_rows), line("a", "v2", "mirror", body=two_rows),
        line("b", "v1", body=two_rows), line("b", "v2", "mirror", body=one_off),
        line("c", "v1", body=tf, protocol="tfserving"),
        line("c", "v2", "mirror", body=tf_flipped, protocol="tfserving"),
        line("d", "v1", body=oip_body([1.0])), line("d", "v2", "mirror", body=oip_body([[1.0], [1.0]])),
    ])  # fmt: skip
    pair = _pair(analysis, "v2")
    assert (pair["compared"], pair["agreed"]) == (4, 1)  # answers: only "a" agrees
    assert pair["comparison"]["rows"] == 6  # type: ignore[index]  # rows of a, b, c ("d": 1 vs 2 rows)


def test_prometheus_series() -> None:
    analysis = OnlineAnalysis()
    analysis.feed(mirrored_pairs(10, "good") + mirrored_pairs(10, "flipped", flip=True))
    text = generate_latest(analysis_registry(analysis)).decode()
    assert 'modelyard_shadow_agreement_ratio{baseline="v1",candidate="good",route="p/m"} 1.0' in text
    assert 'modelyard_shadow_agreement_ratio{baseline="v1",candidate="flipped",route="p/m"} 0.0' in text
    assert 'modelyard_shadow_compared_total{baseline="v1",candidate="good",route="p/m"} 10.0' in text
    bucket = (
        'modelyard_shadow_difference_bucket{baseline="v1",candidate="good",le="0",output="y",route="p/m"}'
    )
    assert f"{bucket} 10.0" in text
    assert 'modelyard_shadow_unmatched_total{candidate="good",route="p/m"} 0.0' in text
    assert "modelyard_analysis_records_total 40.0" in text


def test_unbalanced_streams_stay_bounded_and_unjoined_mirrors_count_as_unmatched() -> None:
    clock = Clock()
    analysis = OnlineAnalysis(limits=JoinLimits(max_records=100, max_age_s=5.0), clock=clock)
    body = oip_body([1.0])
    # A canary split: primaries that never get a mirror. The window keeps the newest 100.
    for batch in range(20):
        analysis.feed([line(f"p{batch}-{i}", "v1", body=body) for i in range(500)])
        assert len(analysis.window.primaries) <= 100
    # Mirrors whose primaries were never logged: bounded, and each dropped one is unmatched.
    for batch in range(20):
        analysis.feed([line(f"m{batch}-{i}", "v2", "mirror", body=body) for i in range(500)])
        assert len(analysis.window) <= 200
    assert analysis.stats("p", "m")["v2"].unmatched == 10_000 - 100
    # Age: a mirror left waiting longer than max_age_s is dropped even when the log goes quiet.
    clock.now += 6
    analysis.feed([])
    assert len(analysis.window) == 0
    assert analysis.stats("p", "m")["v2"].unmatched == 10_000
    # Bodies count too: a few huge answers cannot hold the memory either.
    small = OnlineAnalysis(limits=JoinLimits(max_records=10_000, max_bytes=100_000))
    huge = oip_body([1.0] * 5000)
    small.feed([line(f"h{i}", "v1", body=huge) for i in range(100)])
    assert small.window.bytes <= 100_000


def test_a_primary_evicted_before_its_mirror_arrived_makes_the_mirror_unmatched() -> None:
    clock = Clock()
    analysis = OnlineAnalysis(limits=JoinLimits(max_records=10, max_age_s=1.0), clock=clock)
    analysis.feed([line("late", "v1", body=oip_body([1.0]))])
    clock.now += 2
    analysis.feed([])
    analysis.feed([line("late", "v2", "mirror", body=oip_body([1.0]))])
    clock.now += 2
    analysis.feed([])
    stats = analysis.stats("p", "m")["v2"]
    assert (stats.compared, stats.unmatched) == (0, 1)


def test_malformed_records_are_counted_and_skipped() -> None:
    analysis = OnlineAnalysis()
    analysis.feed([b"not json", b"[1, 2]", b'{"project": "p"}', line("a", "v1", body=oip_body([1.0]))])
    assert (analysis.records, analysis.malformed) == (4, 3)
    assert analysis.stats("p", "m")["v1"].requests == 1


def test_snapshots_diff_into_a_steps_own_evidence() -> None:
    analysis = OnlineAnalysis()
    analysis.feed(mirrored_pairs(10))
    before = analysis.stats("p", "m")["v2"]
    analysis.feed(mirrored_pairs(5, flip=True, start=100))
    step = analysis.stats("p", "m")["v2"].since(before)
    assert (step.compared, step.agreed, step.mirrored) == (5, 0, 5)


def test_answers_of_different_shapes_names_or_types_disagree_without_stopping_the_analysis() -> None:
    def body(name: str, datatype: str, shape: list[int], data: list[object]) -> str:
        return orjson.dumps(
            {"outputs": [{"name": name, "datatype": datatype, "shape": shape, "data": data}]}
        ).decode()

    text, number = body("y", "BYTES", [1], ["cat"]), body("y", "FP32", [1], [1.5])
    analysis = OnlineAnalysis()
    analysis.feed([
        line("a", "v1", body=text), line("a", "v2", "mirror", body=number),
        line("b", "v1", body=body("y", "FP32", [1, 3], [1, 2, 3])),
        line("b", "v2", "mirror", body=body("y", "FP32", [1, 2], [1, 2])),
        line("c", "v1", body=number), line("c", "v2", "mirror", body=body("z", "INT64", [1], [1])),
        line("d", "v1", body=number), line("d", "v2", "mirror", body=text),
    ])  # fmt: skip
    pair = _pair(analysis, "v2")
    assert (pair["compared"], pair["agreed"]) == (4, 0)
    analysis.feed(mirrored_pairs(3, start=10))  # and it goes on
    assert analysis.stats("p", "m")["v2"].agreed == 3
