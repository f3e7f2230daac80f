"""The online analysis as Prometheus series, rendered from its counters at each scrape.

Nothing is updated per record: a collector copies the analysis' counters when scraped, so the
series cost the reading thread nothing. ``route`` is ``project/model``. An agreement ratio is only
exported once a pair has compared an answer (no data is not 0). Unmatched answers are labelled by
the candidate alone: their primary never arrived, so neither did the name of their baseline.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from modelyard.validation.compare import DIFF_EDGES
from modelyard.validation.evidence import VersionStats
from modelyard.validation.online import OnlineAnalysis

__all__ = ["AnalysisCollector", "analysis_registry"]

PAIR = ["route", "baseline", "candidate"]


def analysis_registry(analysis: OnlineAnalysis) -> CollectorRegistry:
    """A registry of its own holding the analysis' series (what ``/api/v1/analysis/metrics`` serves)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AnalysisCollector(analysis))
    return registry


class AnalysisCollector(Collector):
    """Every ``modelyard_shadow_*`` and ``modelyard_analysis_*`` series of one analysis."""

    def __init__(self, analysis: OnlineAnalysis) -> None:
        self.analysis = analysis

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        versions, pairs = self.analysis.snapshot()
        ratio = GaugeMetricFamily(
            "modelyard_shadow_agreement_ratio", "Candidate answers agreeing with the baseline's", labels=PAIR
        )
        compared = CounterMetricFamily(
            "modelyard_shadow_compared", "Mirrored answers compared with the baseline's", labels=PAIR
        )
        agreed = CounterMetricFamily("modelyard_shadow_agreed", "Compared answers that agreed", labels=PAIR)
        difference = HistogramMetricFamily(
            "modelyard_shadow_difference",
            "Per row, the largest absolute difference between the two versions' values of an output",
            labels=[*PAIR, "output"],
        )
        for pair in pairs:
            labels = [f"{pair.project}/{pair.model}", pair.baseline, pair.candidate]
            compared.add_metric(labels, pair.compared)
            agreed.add_metric(labels, pair.agreed)
            if pair.compared:
                ratio.add_metric(labels, pair.agreed / pair.compared)
            for output, counts in sorted(pair.histograms.items()):
                difference.add_metric([*labels, output], _buckets(counts), None)
        yield from (ratio, compared, agreed, difference)
        yield from self._versions(versions)
        yield from self._reader()

    def _versions(self, versions: dict[tuple[str, str, str], VersionStats]) -> Iterator[CounterMetricFamily]:
        unmatched = CounterMetricFamily(
            "modelyard_shadow_unmatched",
            "Mirrored answers whose primary never arrived within the join window",
            labels=["route", "candidate"],
        )
        answers = CounterMetricFamily(
            "modelyard_analysis_answers", "Logged answers read, by version and role",
            labels=["route", "version", "role"],
        )  # fmt: skip
        errors = CounterMetricFamily(
            "modelyard_analysis_errors", "Logged answers that failed (status >= 500 or none)",
            labels=["route", "version", "role"],
        )  # fmt: skip
        for (project, model, version), stats in sorted(versions.items()):
            route = f"{project}/{model}"
            for role, count, failed in (
                ("primary", stats.requests, stats.errors),
                ("mirror", stats.mirrored, stats.mirror_errors),
            ):
                if count:
                    answers.add_metric([route, version, role], count)
                    errors.add_metric([route, version, role], failed)
            if stats.mirrored:
                unmatched.add_metric([route, version], stats.unmatched)
        yield from (unmatched, answers, errors)

    def _reader(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        analysis = self.analysis
        up = GaugeMetricFamily("modelyard_analysis_up", "1 while the inference log can be read")
        up.add_metric([], 1.0 if analysis.healthy() else 0.0)
        yield up
        yield CounterMetricFamily("modelyard_analysis_records", "Log records read", value=analysis.records)
        yield CounterMetricFamily(
            "modelyard_analysis_malformed", "Log records that were not inference records",
            value=analysis.malformed,
        )  # fmt: skip
        yield CounterMetricFamily(
            "modelyard_analysis_read_failures", "Failed reads of the log", value=analysis.read_failures
        )
        yield CounterMetricFamily(
            "modelyard_analysis_skipped", "Log records over the reader's max_record_bytes, dropped unread",
            value=analysis.source.skipped if analysis.source is not None else 0,
        )  # fmt: skip
        yield CounterMetricFamily(
            "modelyard_analysis_oversized", "Logged answers whose body was too large to keep and compare",
            value=analysis.oversized,
        )  # fmt: skip
        yield CounterMetricFamily(
            "modelyard_analysis_ambiguous",
            "Primary answers not paired: their request id repeated and no request hash told them apart",
            value=analysis.window.ambiguous,
        )
        waiting = GaugeMetricFamily("modelyard_analysis_join_window", "Answers waiting for their pair")
        waiting.add_metric([], float(len(analysis.window)))
        yield waiting


def _buckets(counts: tuple[int, ...]) -> list[tuple[str, float]]:
    """Per-bucket counts (the last one: above every edge) as Prometheus' cumulative buckets."""
    total, buckets = 0, []
    for edge, count in zip(DIFF_EDGES, counts, strict=False):
        total += count
        buckets.append((f"{edge:g}", float(total)))
    buckets.append(("+Inf", float(total + counts[-1])))
    return buckets
