"""The shipped Grafana board (deploy/grafana/modelyard-gateway.json) against the series the gateway exports.

The exported names come from a real ``GatewayMetrics`` rendered to exposition text, so renaming a metric
(or dropping a label the board filters on) breaks this test rather than silently emptying a panel.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families

from modelyard.gateway.metrics import CountedLatency, GatewayMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "modelyard-gateway.json"
METRIC = re.compile(r"modelyard_gateway_[a-z_]+")
# A metric name with its optional {selector}; label values in the board never contain "}".
SELECTOR = re.compile(r"(modelyard_gateway_[a-z_]+)(\{[^}]*\})?")
VARIABLES = ("project", "model", "version")


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    """Every sample name the gateway exports, with the label names it carries."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)  # this process's registry only
        metrics = GatewayMetrics()
    # dir(), not vars(): compiled (scripts/compile), GatewayMetrics is a native class with no __dict__.
    for metric in (getattr(metrics, name) for name in dir(metrics) if not name.startswith("_")):
        if isinstance(metric, CountedLatency):
            metric.add(("x",) * len(metric.labels), 0.01)
            continue
        if not isinstance(metric, Counter | Gauge | Histogram):
            continue
        labelnames = metric._labelnames
        child = metric.labels(*(["x"] * len(labelnames))) if labelnames else metric
        if isinstance(child, Histogram):
            child.observe(0.01)
        else:
            child.inc()
    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels.keys() - {"le"})
    return samples


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels inside a collapsed row


def _exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in _panels(dashboard)
        for target in panel.get("targets", [])
    ]


def test_export_sanity(exported: dict[str, set[str]]) -> None:
    # Guards the fixture itself: counters, histograms and labelled series all made it out.
    assert "modelyard_gateway_requests_total" in exported
    assert "modelyard_gateway_request_duration_seconds_bucket" in exported
    assert {"project", "model", "version", "code"} <= exported["modelyard_gateway_requests_total"]


def test_every_query_uses_exported_series(dashboard: dict[str, Any], exported: dict[str, set[str]]) -> None:
    exprs = _exprs(dashboard)
    assert len(exprs) >= 15
    for title, expr in exprs:
        names = METRIC.findall(expr)
        assert names, f"{title}: no modelyard_gateway_ series in {expr!r}"
        unknown = sorted(set(names) - exported.keys())
        assert not unknown, f"{title}: {unknown} not exported by GatewayMetrics"


def test_queries_filter_by_template_variables(
    dashboard: dict[str, Any], exported: dict[str, set[str]]
) -> None:
    # Series that carry a project label must be filtered by $project; the in-flight/connection
    # gauges, routing series and log_records have no such label, so a filter would empty them.
    filtered = 0
    for title, expr in _exprs(dashboard):
        for name, selector in SELECTOR.findall(expr):
            if "project" in exported[name]:
                assert 'project=~"$project"' in selector, f"{title}: {name} not filtered: {expr!r}"
                assert 'model=~"$model"' in selector, f"{title}: {name} not filtered: {expr!r}"
                filtered += 1
        if any("version" in exported[name] for name in METRIC.findall(expr)):
            assert 'version=~"$version"' in expr, f"{title}: no $version filter: {expr!r}"
    assert filtered >= 15


def test_rates_use_rate_interval(dashboard: dict[str, Any]) -> None:
    for title, expr in _exprs(dashboard):
        for window in re.findall(r"\[[^\]]*\]", expr):
            assert window == "[$__rate_interval]", f"{title}: {expr!r}"
        if "histogram_quantile" in expr:
            assert "_bucket" in expr, f"{title}: {expr!r}"
            assert re.search(r"by \([^)]*\ble\b", expr), f"{title}: quantile without le: {expr!r}"


def test_template_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in VARIABLES:
        var = variables[name]
        assert var["type"] == "query"
        assert var["multi"] is True
        assert var["includeAll"] is True
        assert var["definition"].startswith("label_values(modelyard_gateway_requests_total")
        assert var["definition"].endswith(f", {name})")
        assert var["datasource"]["uid"] == "${datasource}"


def test_panels_layout(dashboard: dict[str, Any]) -> None:
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["uid"] == "modelyard-gateway"
    panels = list(_panels(dashboard))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in panels:
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= grid.keys(), panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}", panel["title"]
