"""The per-row comparison: kinds, tolerance, NaN/Inf, errors, merging, bounded memory."""

from __future__ import annotations

import numpy as np
import pytest

from modelyard.validation.compare import Comparison, Latency, Tolerance, output_kind
from modelyard.validation.evidence import VersionStats


def test_output_kinds_are_guessed_from_the_first_answer() -> None:
    assert output_kind(np.zeros((4, 3), np.float32)) == "scores"
    assert output_kind(np.zeros((4, 1), np.float32)) == "numeric"
    assert output_kind(np.zeros(4, np.float64)) == "numeric"
    assert output_kind(np.zeros(4, np.int64)) == "label"
    assert output_kind(np.array(["a", "b"], dtype=object)) == "label"
    assert output_kind(np.zeros((4, 2), np.int32)) == "numeric"
    assert output_kind(np.zeros((4, 2), dtype="U3")) == "exact"


def test_identical_answers_agree_exactly() -> None:
    x = np.random.default_rng(0).random((50, 3)).astype(np.float32)
    comparison = Comparison()
    assert comparison.update({"p": x}, {"p": x.copy()}).all()
    summary = comparison.summary()
    assert summary["agreement"] == 1.0
    assert summary["max_abs_diff"] == 0.0
    assert summary["outputs"]["p"]["exact_match"] == 1.0
    assert summary["outputs"]["p"]["histogram"]["counts"][0] == 50
    assert summary["worst"] == []


def test_numbers_within_tolerance_agree_and_beyond_do_not() -> None:
    base = np.array([[1.0], [2.0], [100.0]])
    cand = base + np.array([[1e-7], [1e-3], [5e-4]])
    comparison = Comparison(Tolerance(abs_tol=1e-6, rel_tol=1e-5))
    agreed = comparison.update({"y": base}, {"y": cand})
    # |d| <= 1e-6 + 1e-5 * |b|: row 0 yes; row 1 (1e-3 > 2.1e-5) no; row 2 (5e-4 <= 1.001e-3) yes.
    assert agreed.tolist() == [True, False, True]
    summary = comparison.summary()
    assert summary["max_abs_diff"] == pytest.approx(1e-3)
    assert summary["max_rel_diff"] == pytest.approx(5e-4)
    assert summary["outputs"]["y"]["exact_match"] == 0.0
    assert [w["key"] for w in summary["worst"]] == [1, 2, 0]  # the disagreement first


def test_scores_agree_on_their_argmax_and_keep_a_confusion_table() -> None:
    base = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    cand = np.array([[0.7, 0.3], [0.4, 0.6], [0.4, 0.6]])
    comparison = Comparison()
    assert comparison.update({"proba": base}, {"proba": cand}).tolist() == [True, True, False]
    output = comparison.summary()["outputs"]["proba"]
    assert output["kind"] == "scores"
    assert output["agreement"] == pytest.approx(2 / 3)
    assert sorted(map(tuple, output["confusion"])) == [("0", "0", 1), ("0", "1", 1), ("1", "1", 1)]


def test_a_row_agrees_only_when_every_output_does() -> None:
    comparison = Comparison()
    agreed = comparison.update(
        {"label": np.array([1, 2, 3]), "y": np.array([0.5, 0.5, 0.5])},
        {"label": np.array([1, 2, 4]), "y": np.array([0.5, 0.9, 0.5])},
    )
    assert agreed.tolist() == [True, False, False]
    worst = comparison.worst_rows()
    assert {(w.key, w.outputs) for w in worst if w.disagreed} == {(1, ("y",)), (2, ("label",))}


def test_nan_and_inf_are_counted_and_nan_agrees_with_nan() -> None:
    base = np.array([[np.nan], [1.0], [np.inf], [2.0]])
    cand = np.array([[np.nan], [np.nan], [np.inf], [np.inf]])
    comparison = Comparison()
    assert comparison.update({"y": base}, {"y": cand}).tolist() == [True, False, True, False]
    summary = comparison.summary()
    assert summary["nonfinite"] == {"baseline": 2, "candidate": 4}
    assert summary["max_abs_diff"] == float("inf")
    assert summary["outputs"]["y"]["histogram"]["counts"][-1] == 2  # Inf differences, last bucket


def test_missing_outputs_and_shape_mismatches_disagree() -> None:
    comparison = Comparison()
    agreed = comparison.update({"a": np.zeros((2, 2)), "b": np.zeros(2)}, {"a": np.zeros((2, 3))})
    assert agreed.tolist() == [False, False]
    summary = comparison.summary()
    assert summary["missing_outputs"] == {"b": 2}
    assert summary["outputs"]["a"]["mismatched"] == 2


def test_a_row_only_the_candidate_failed_is_compared_and_disagrees() -> None:
    comparison = Comparison()
    comparison.update({"y": np.zeros(8)}, {"y": np.zeros(8)})
    comparison.add_errors(2, candidate=True)  # a user would have seen a wrong answer
    comparison.add_errors(3, baseline=True, candidate=True)  # nothing to compare with
    comparison.add_errors(1, baseline=True)
    summary = comparison.summary()
    assert (summary["rows"], summary["compared"], summary["agreed"]) == (14, 10, 8)
    assert summary["agreement"] == 0.8
    assert summary["errors"] == {"baseline": 4, "candidate": 5}


def test_rows_grouped_in_answers_count_answers() -> None:
    comparison = Comparison()
    base = np.array([[1.0], [2.0], [3.0], [4.0]])
    agreed = comparison.update({"y": base}, {"y": base * [[1], [1], [1], [-1]]}, answers=[1, 2, 1])
    assert agreed.tolist() == [True, True, False]  # the last answer's one row disagrees
    comparison.add_unvalued(agreed=True)  # e.g. the same refusal from both
    summary = comparison.summary()
    assert (summary["rows"], summary["compared"], summary["agreed"]) == (4, 4, 3)
    assert summary["outputs"]["y"]["rows"] == 4  # each output still counts rows
    with pytest.raises(ValueError, match="answers"):
        comparison.update({"y": base}, {"y": base}, answers=[1, 2])


@pytest.mark.parametrize("flipped", [False, True])
def test_text_against_numbers_disagrees_instead_of_raising(flipped: bool) -> None:
    text, numbers = np.array(["cat", "dog"]), np.array([1.5, float("nan")])
    base, cand = (numbers, text) if flipped else (text, numbers)
    comparison = Comparison()
    assert comparison.update({"y": base}, {"y": cand}).tolist() == [False, False]
    assert comparison.summary()["agreement"] == 0.0


def test_one_histogram_quantile_for_a_comparison_and_a_versions_stats() -> None:
    latency = Latency()
    for ms in (2.0, 2.0, 900_000.0):  # the last beyond every bucket: 15 minutes
        latency.add(ms / 1000)
    stats = VersionStats(latency_counts=tuple(latency.counts))
    for q in (0.0, 0.5, 0.66):
        assert latency.quantile(q) == stats.latency_quantile(q) == 2.0, q  # q=0: the fastest bucket
    assert latency.quantile(0.99) == 900_000.0  # beyond the buckets: the slowest call, when known
    assert stats.latency_quantile(0.99) == float("inf")  # else unbounded


def test_no_rows_means_no_figures_not_zero() -> None:
    summary = Comparison().summary()
    assert summary["agreement"] is None
    assert summary["max_abs_diff"] is None
    assert summary["error_rate"] == {"baseline": None, "candidate": None}
    assert summary["latency"]["baseline"]["mean_ms"] is None


def test_row_by_row_and_merged_figures_equal_one_batch() -> None:
    rng = np.random.default_rng(1)
    base = rng.random((40, 4))
    cand = base + rng.normal(0, 1e-3, base.shape) * (rng.random((40, 1)) < 0.3)
    whole = Comparison(worst=5)
    whole.update({"p": base}, {"p": cand})
    first, second = Comparison(worst=5), Comparison(worst=5)
    for row in range(40):  # online: one request at a time, with its own key
        part = first if row < 25 else second
        part.update({"p": base[row : row + 1]}, {"p": cand[row : row + 1]}, keys=[row])
    first.merge(second)
    merged, expected = first.summary(), whole.summary()
    for key in ("rows", "agreed", "agreement", "max_abs_diff", "max_rel_diff", "nonfinite"):
        assert merged[key] == expected[key], key
    merged_p, expected_p = merged["outputs"]["p"], expected["outputs"]["p"]
    for key, value in expected_p.items():  # sums of floats in another order: equal to rounding
        assert merged_p[key] == (pytest.approx(value) if isinstance(value, float) else value), key
    assert merged["worst"] == expected["worst"]


def test_memory_stays_bounded() -> None:
    comparison = Comparison(worst=3)
    for start in range(0, 2000, 100):
        labels = np.arange(start, start + 100)
        comparison.update({"label": labels}, {"label": labels + 1})
    summary = comparison.summary()
    assert len(summary["worst"]) == 3
    assert len(summary["outputs"]["label"]["confusion"]) <= 65  # 64 labels per side, then "(other)"


def test_latency_is_summarised_per_version() -> None:
    comparison = Comparison()
    comparison.add_latency("baseline", 0.010, rows=100)
    comparison.add_latency("baseline", 0.030, rows=100)
    comparison.add_latency("candidate", 0.040, rows=200)
    latency = comparison.summary()["latency"]
    assert latency["baseline"]["mean_ms"] == pytest.approx(20.0)
    assert latency["baseline"]["ms_per_row"] == pytest.approx(0.2)
    assert latency["candidate"]["max_ms"] == pytest.approx(40.0)


def test_a_batch_whose_outputs_disagree_on_rows_is_refused() -> None:
    with pytest.raises(ValueError, match="number of rows"):
        Comparison().update({"a": np.zeros(3)}, {"a": np.zeros(2)})
