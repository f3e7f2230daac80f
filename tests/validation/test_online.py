"""The online analysis: per-version stats, primary and mirrored answers joined by request id and
compared, the join window bounded whatever the streams do, and the refusal of a blind route."""

from __future__ import annotations

import tracemalloc

import orjson
import pytest
from prometheus_client import generate_latest

from modelyard.errors import Conflict
from modelyard.routing.table import ModelRoute, VersionRoute
from modelyard.validation import online
from modelyard.validation.evidence import VersionStats
from modelyard.validation.online import OnlineAnalysis, check_route
from modelyard.validation.online_join import JoinLimits
from modelyard.validation.online_metrics import analysis_registry
from modelyard.validation.policy import Policy
from tests.validation.online_support import line, mirrored_pairs, oip_body, record


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


def test_no_payload_means_blind_pairs_and_a_refused_route() -> None:
    analysis = OnlineAnalysis()
    analysis.feed([line("a", "v1", payload="none"), line("a", "v2", "mirror", payload="none")])
    assert _pair(analysis, "v2")["blind"] == 1
    assert analysis.stats("p", "m")["v2"].compared == 0
    route = ModelRoute("p", "m", (VersionRoute("v1", 1), VersionRoute("v2", mirror=True)), log_payload="none")
    with pytest.raises(Conflict) as refused:
        check_route(route)
    assert refused.value.field == "log_payload"
    assert "log_payload" in refused.value.message
    check_route(ModelRoute("p", "other", log_payload="hash"))  # hashes can be compared


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
    comparison = pair["comparison"]
    assert (comparison["rows"], comparison["compared"], comparison["agreement"]) == (4, 4, 0.25)  # type: ignore[index]
    assert comparison["outputs"]["y"]["rows"] == 4  # type: ignore[index]  # an output's figures count rows


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
    assert "modelyard_analysis_oversized_total 0.0" in text
    assert "modelyard_analysis_ambiguous_total 0.0" in text


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


def test_a_malformed_record_costs_only_itself() -> None:
    analysis = OnlineAnalysis()
    lines = mirrored_pairs(50)
    lines.insert(10, orjson.dumps({**orjson.loads(lines[10]), "status": "abc"}))
    lines.insert(20, orjson.dumps({**orjson.loads(lines[20]), "latency_ms": "slow"}))
    lines.insert(30, orjson.dumps({**orjson.loads(lines[30]), "version": 7}))
    lines.insert(40, orjson.dumps({**orjson.loads(lines[40]), "status": 1e400}))
    analysis.feed(lines)
    assert (analysis.records, analysis.malformed) == (104, 4)
    stats = analysis.stats("p", "m")
    assert set(stats) == {"v1", "v2"}  # nothing counted under the malformed record's version
    assert (stats["v1"].requests, stats["v2"].mirrored, stats["v2"].compared) == (50, 50, 50)


def _text_body(long: int) -> str:
    """One long string among 999 short ones: numpy's fixed-width text would make it 1000 x long."""
    data = ["x" * long] + ["a"] * 999
    return orjson.dumps(
        {"outputs": [{"name": "o", "datatype": "BYTES", "shape": [1000], "data": data}]}
    ).decode()


def test_text_answers_never_decode_to_fixed_width_arrays_nor_stay_decoded() -> None:
    analysis = OnlineAnalysis()
    body = _text_body(4000)  # 10 KB of JSON; 16 MB as a fixed-width array
    lines = [
        x
        for i in range(10)
        for x in (line(f"r{i}", "v1", body=body), line(f"r{i}", "v2", "mirror", body=body))
    ]
    tracemalloc.start()
    try:
        analysis.feed(lines)
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert _pair(analysis, "v2")["agreed"] == 10
    assert len(analysis.window.primaries) == 10  # still waiting for other mirrored versions
    assert peak < 8_000_000
    assert held < 2_000_000  # the bodies, not their arrays


def test_decoded_answers_waiting_for_their_comparison_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(online, "MAX_QUEUED_BYTES", 1 << 20)
    analysis = OnlineAnalysis()
    body = oip_body([float(i % 97) for i in range(12_500)])  # 50 KB of FP32, about 75 KB of JSON
    lines = [
        x
        for i in range(200)
        for x in (line(f"r{i}", "v1", body=body), line(f"r{i}", "v2", "mirror", body=body))
    ]
    tracemalloc.start()
    try:
        analysis.feed(lines)  # one read's worth: compared as the queue fills, not all at the end
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert _pair(analysis, "v2")["agreed"] == 200
    # Beyond the bodies the window holds, a few answers decoded at a time; all 200 pairs at once
    # (compared at the end of the read) would be 170 MB.
    assert peak - held < 12_000_000


def test_an_oversized_body_is_counted_never_kept_nor_compared() -> None:
    analysis = OnlineAnalysis(limits=JoinLimits(max_body_bytes=1000))
    huge, small = oip_body([1.0] * 500), oip_body([1.0])
    analysis.feed([line("a", "v1", body=huge), line("b", "v1", body=huge)])
    assert analysis.window.bytes == 0
    analysis.feed([
        line("a", "v2", "mirror", body=huge),
        line("b", "v2", "mirror", body=small, status=500),  # a failure needs no body to count
        line("c", "v1", body=small), line("c", "v2", "mirror", body=small),
    ])  # fmt: skip
    pair = _pair(analysis, "v2")
    assert (pair["oversized"], pair["compared"], pair["agreed"]) == (1, 2, 1)
    assert analysis.oversized == 3
    assert analysis.stats("p", "m")["v1"].requests == 3


def test_a_reused_request_id_pairs_only_answers_to_the_same_request() -> None:
    # Two different requests under one client x-request-id; the mirrored answers come after both.
    def rec(role: str, version: str, value: float, request: str) -> bytes:
        body = oip_body([value])
        return orjson.dumps(record("fixed", version, role, body, request=request))  # type: ignore[arg-type]

    analysis = OnlineAnalysis()
    analysis.feed([
        rec("primary", "v1", 1.0, "first"), rec("primary", "v1", 2.0, "second"),
        rec("mirror", "v2", 1.0, "first"), rec("mirror", "v2", 2.0, "second"),
    ])  # fmt: skip
    assert (_pair(analysis, "v2")["compared"], _pair(analysis, "v2")["agreed"]) == (2, 2)
    # Without the request's hash the two cannot be told apart: not paired at all, and said so.
    clock = Clock()
    blind = OnlineAnalysis(limits=JoinLimits(max_age_s=1.0), clock=clock)
    unhashed = [{**record("fixed", v, role, oip_body([x])).to_dict(), "request_hash": None}
                for role, v, x in (("primary", "v1", 1.0), ("primary", "v1", 2.0),
                                   ("mirror", "v2", 1.0), ("mirror", "v2", 2.0))]  # fmt: skip
    blind.feed([orjson.dumps(r) for r in unhashed])
    clock.now += 2
    blind.feed([])
    assert blind.pairs("p", "m") == []
    assert blind.window.ambiguous == 2
    assert blind.stats("p", "m")["v2"].unmatched == 2


def test_one_agreement_figure_for_the_pair_its_verdict_its_series_and_the_rollout() -> None:
    analysis = OnlineAnalysis()
    body = oip_body([1.0])
    lines = mirrored_pairs(6)
    for i in range(2):  # the candidate failed twice where the baseline answered: wrong answers too
        lines += [line(f"e{i}", "v1", body=body), line(f"e{i}", "v2", "mirror", body=body, status=500)]
    lines += [
        line("x", "v1", body=body, status=400),
        line("x", "v2", "mirror", body=body),
    ]  # v2 answered a refusal
    analysis.feed(lines)
    pair = _pair(analysis, "v2")
    summary = pair["comparison"]
    assert (pair["compared"], pair["agreed"], pair["agreement"]) == (9, 6, 6 / 9)
    assert summary["agreement"] == 6 / 9  # type: ignore[index]  # what the min_agreement gate reads
    gate = next(g for g in pair["gates"] if g["gate"] == "min_agreement")  # type: ignore[attr-defined]
    assert gate["value"] == 6 / 9
    assert summary["error_rate"]["candidate"] == 2 / 9  # type: ignore[index]  # errors also counted as such
    stats = analysis.stats("p", "m")["v2"]
    assert (stats.compared, stats.agreed) == (9, 6)
    text = generate_latest(analysis_registry(analysis)).decode()
    assert f'modelyard_shadow_agreement_ratio{{baseline="v1",candidate="v2",route="p/m"}} {6 / 9}' in text


def test_a_candidate_is_read_against_one_baseline_or_all() -> None:
    analysis = OnlineAnalysis()
    analysis.feed(mirrored_pairs(4))  # v2 agrees with v1
    one, two = oip_body([1.0]), oip_body([2.0])
    analysis.feed(
        [
            x
            for i in range(4)
            for x in (line(f"o{i}", "v3", body=one), line(f"o{i}", "v2", "mirror", body=two))
        ]
    )
    assert analysis.stats("p", "m", baseline="v1")["v2"].agreement == 1.0
    assert analysis.stats("p", "m", baseline="v3")["v2"].agreement == 0.0
    assert analysis.stats("p", "m")["v2"].agreement == 0.5
