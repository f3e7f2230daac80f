"""A validation report for people: tables on the terminal, and one self-contained HTML page.

The HTML page loads nothing from anywhere (no script, no stylesheet, no font, no image file): the
difference histogram is inline SVG and every value is escaped, so it can be attached to a review
or served as is.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

from modelyard.validation.compare import DIFF_EDGES
from modelyard.validation.offline import Report

__all__ = ["render_html", "render_terminal"]

_STYLE = {"pass": "green", "fail": "red", "inconclusive": "yellow"}
_MAX_CONFUSION = 20  # labels per side shown in a confusion table


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return str(value)


def _percent(value: Any) -> str:
    return "-" if value is None else f"{100.0 * float(value):.2f} %"


def headline(report: Report) -> str:
    """One line: what was compared with what, on which data."""
    data = report.dataset
    return (
        f"candidate {report.candidate.given} ({report.candidate.resolved}) against baseline "
        f"{report.baseline.given} ({report.baseline.resolved}) on {data.path} "
        f"({data.rows:,} rows, {data.format})"
    )


def gate_rows(report: Report) -> list[tuple[str, str, str, str, str]]:
    return [(g.gate, g.outcome.value, _number(g.value), _number(g.threshold), g.reason) for g in report.gates]


def figure_rows(report: Report) -> list[tuple[str, str]]:
    s = report.summary
    errors, nonfinite = s["errors"], s["nonfinite"]
    rows = [
        ("rows sent to both", _number(s["rows"])),
        ("rows compared (the baseline answered)", _number(s["compared"])),
        ("agreement", _percent(s["agreement"])),
        ("errors (baseline / candidate)", f"{errors['baseline']:,} / {errors['candidate']:,}"),
        ("NaN/Inf values (baseline / candidate)", f"{nonfinite['baseline']:,} / {nonfinite['candidate']:,}"),
        ("max |difference|", _number(s["max_abs_diff"])),
        ("max relative difference", _number(s["max_rel_diff"])),
    ]  # fmt: skip
    for side in ("baseline", "candidate"):
        latency = s["latency"][side]
        rows.append(
            (
                f"{side} latency",
                f"{_number(latency['mean_ms'])} ms per call ({_number(latency['calls'])} calls, p99 "
                f"{_number(latency['p99_ms'])} ms), {_number(latency['ms_per_row'])} ms per row",
            )
        )
    labels = s.get("labels")
    if labels and labels.get("difference") is not None:
        low, high = labels["ci"]
        rows.append(
            (
                f"{labels['metric']} (labels vs '{labels['output']}')",
                f"baseline {labels['baseline']:.6g}, candidate {labels['candidate']:.6g}, "
                f"difference {labels['difference']:+.6g}, {labels['confidence']:.0%} CI "
                f"[{low:+.6g}, {high:+.6g}] ({labels['resamples']} paired resamples, seed {labels['seed']})",
            )
        )
    if report.rows_per_s is not None:
        rows.append(
            ("throughput", f"{report.rows_per_s:,.0f} rows/s over both versions, {report.seconds:.2f} s")
        )
    return rows


def output_rows(report: Report) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for name, o in report.summary["outputs"].items():
        nonfinite = o.get("nonfinite") or {}
        found.append(
            (
                name,
                o["kind"],
                _percent(o["agreement"]),
                _percent(o["exact_match"]),
                _number(o.get("max_abs_diff")),
                _number(o.get("mean_abs_diff")),
                f"{nonfinite.get('baseline', 0)} / {nonfinite.get('candidate', 0)}" if nonfinite else "-",
            )
        )
    return found


OUTPUT_COLUMNS = ("output", "compared as", "agreement", "exact", "max |diff|", "mean |diff|", "NaN/Inf b / c")


def render_terminal(report: Report, console: Any) -> None:
    """Print the report with rich (``console`` is a ``rich.console.Console``)."""
    from rich.table import Table

    console.print(headline(report))
    gates = Table(title="gates")
    for column in ("gate", "outcome", "value", "threshold", "why"):
        gates.add_column(column)
    for gate, outcome, value, threshold, reason in gate_rows(report):
        gates.add_row(gate, f"[{_STYLE[outcome]}]{outcome}[/]", value, threshold, reason)
    figures = Table(title="figures", show_header=False)
    figures.add_column("figure")
    figures.add_column("value")
    for row in figure_rows(report):
        figures.add_row(*row)
    outputs = Table(title="per output")
    for column in OUTPUT_COLUMNS:
        outputs.add_column(column)
    for output_row in output_rows(report):
        outputs.add_row(*output_row)
    console.print(figures, outputs, gates)
    for side, errors in report.errors.items():
        for message, count in errors.items():
            console.print(f"[red]{side} failed {count} row(s):[/] {message}", markup=True, highlight=False)
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    outcome = report.outcome.value
    console.print(f"verdict: [bold {_STYLE[outcome]}]{outcome.upper()}[/]")


# -- HTML ------------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.8em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;
vertical-align:top}th{background:#f3f3f3}.pass{color:#176f2c}.fail{color:#b00020}.inconclusive{color:#8a6100}
.verdict{font-size:1.3em;font-weight:bold}code,.mono{font-family:ui-monospace,monospace;font-size:12px}
.off{background:#fde8e8}svg text{font:11px system-ui,sans-serif}
"""


def _e(value: Any) -> str:
    return html.escape(_number(value) if not isinstance(value, str) else value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], classes: Sequence[str] = ()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        f"<tr class='{classes[i] if i < len(classes) else ''}'>"
        + "".join(f"<td>{cell}</td>" for cell in row)
        + "</tr>"
        for i, row in enumerate(rows)
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _histogram(name: str, counts: Sequence[int]) -> str:
    """Rows by their largest absolute difference, one bar per decade, as inline SVG."""
    labels = ["0", *(f"≤1e{round(math.log10(edge))}" for edge in DIFF_EDGES[1:]), ">1e6"]
    width, height, bar = 40 * len(counts) + 50, 190, 34
    top = max(counts) or 1
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img'"
             f" aria-label='difference histogram of {html.escape(name)}'>"]  # fmt: skip
    for i, (count, label) in enumerate(zip(counts, labels, strict=True)):
        h = 0 if not count else max(2, round(130 * count / top))
        x = 40 + 40 * i
        parts.append(f"<rect x='{x}' y='{150 - h}' width='{bar}' height='{h}' fill='#4a78c2'><title>"
                     f"{html.escape(label)}: {count} rows</title></rect>")  # fmt: skip
        if count:
            parts.append(f"<text x='{x + bar / 2}' y='{145 - h}' text-anchor='middle'>{count}</text>")
        parts.append(
            f"<text x='{x + bar / 2}' y='168' text-anchor='middle' transform='rotate(30 {x + bar / 2} 168)'>"
            f"{html.escape(label)}</text>"
        )
    parts.append("<line x1='38' y1='150' x2='100%' y2='150' stroke='#888'/></svg>")
    return "".join(parts)


def _confusion(name: str, pairs: Sequence[Sequence[Any]]) -> str:
    """Rows by (baseline's class, candidate's class); off the diagonal the versions disagree."""
    totals: dict[str, int] = {}
    for b, c, n in pairs:
        totals[b] = totals.get(b, 0) + n
        totals[c] = totals.get(c, 0) + n
    labels = sorted(totals, key=lambda label: -totals[label])[:_MAX_CONFUSION]
    cells = {(b, c): n for b, c, n in pairs}
    head = "".join(f"<th>{html.escape(c)}</th>" for c in labels)
    body = []
    for b in labels:
        row = "".join(
            f"<td class='{'off' if b != c and cells.get((b, c)) else ''}'>{cells.get((b, c), '')}</td>"
            for c in labels
        )
        body.append(f"<tr><th>{html.escape(b)}</th>{row}</tr>")
    note = (
        f"<p>the {_MAX_CONFUSION} most frequent classes of {len(totals)}</p>"
        if len(totals) > _MAX_CONFUSION
        else ""
    )
    return (
        f"<h3>{html.escape(name)}</h3><p>rows: baseline's class, columns: candidate's class</p>"
        f"<table><tr><th></th>{head}</tr>{''.join(body)}</table>{note}"
    )


def _examples(report: Report) -> str:
    rows = []
    for example in report.examples:
        rows.append(
            [
                _e(example["row"]),
                "yes" if example["disagreed"] else "no",
                _e(example["max_abs_diff"]),
                f"<span class='mono'>{html.escape(str(example['inputs']))}</span>",
                f"<span class='mono'>{html.escape(str(example.get('baseline')))}</span>",
                f"<span class='mono'>{html.escape(str(example.get('candidate')))}</span>",
            ]
        )
    headers = ("row", "disagreed", "max |diff|", "inputs", "baseline answered", "candidate answered")
    return _table(headers, rows) if rows else "<p>every compared row was identical.</p>"


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page."""
    outcome = report.outcome.value
    tables, plots = _html_tables(report), _html_plots(report)
    errors = "".join(
        f"<li>{html.escape(side)}: {count} row(s): {html.escape(message)}</li>"
        for side, found in report.errors.items()
        for message, count in found.items()
    )
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in report.warnings)
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>modelyard validate: {outcome}</title><style>{_CSS}</style></head><body>"
        f"<h1>Validation: <span class='{outcome}'>{outcome}</span></h1><p>{html.escape(headline(report))}</p>"
        f"<p class='mono'>candidate sha256 {_e(report.candidate.sha256)}<br>baseline sha256 "
        f"{_e(report.baseline.sha256)}<br>data sha256 {_e(report.dataset.sha256)}</p>"
        f"{f'<ul>{warnings}</ul>' if warnings else ''}"
        f"<h2>Gates</h2>{tables['gates']}<p class='verdict {outcome}'>verdict: {outcome}</p>"
        f"<h2>Figures</h2>{tables['figures']}<h2>Per output</h2>{tables['outputs']}"
        f"{f'<h2>Errors</h2><ul>{errors}</ul>' if errors else ''}"
        f"<h2>Differences</h2><p>rows by their largest absolute difference between the versions</p>"
        f"{plots['histograms'] or '<p>no numeric output</p>'}"
        f"<h2>Confusion between versions</h2>{plots['confusions'] or '<p>no class output</p>'}"
        f"<h2>Worst rows</h2>{_examples(report)}"
        "</body></html>\n"
    )


def _html_tables(report: Report) -> dict[str, str]:
    """The gates, the figures and the per-output table, as HTML tables."""
    gates = _table(
        ("gate", "outcome", "value", "threshold", "why"),
        [
            [_e(g), f"<span class='{o}'>{o}</span>", _e(v), _e(t), _e(r)]
            for g, o, v, t, r in gate_rows(report)
        ],
    )
    figures = _table(("figure", "value"), [[_e(k), _e(v)] for k, v in figure_rows(report)])
    outputs = _table(OUTPUT_COLUMNS, [[_e(cell) for cell in row] for row in output_rows(report)])
    return {"gates": gates, "figures": figures, "outputs": outputs}


def _html_plots(report: Report) -> dict[str, str]:
    """Each numeric output's difference histogram and each class output's confusion table."""
    outputs = report.summary["outputs"]
    histograms = "".join(
        f"<h3>{html.escape(name)}</h3>{_histogram(name, o['histogram']['counts'])}"
        for name, o in outputs.items()
        if "histogram" in o
    )
    confusions = "".join(
        _confusion(name, o["confusion"]) for name, o in outputs.items() if o.get("confusion")
    )
    return {"histograms": histograms, "confusions": confusions}
