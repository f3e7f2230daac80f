"""``modelyard validate`` on files: verdicts and exit codes, labels and their interval checked by
hand, errors isolated to their rows, and the reports (JSON, terminal, self-contained HTML)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.control.settings import ControlSettings
from modelyard.registry import Registry
from modelyard.validation import offline
from tests.validation.conftest import features, linear

MODELS = Path(__file__).with_name("models.py")


def validate(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["validate", *map(str, args)])
    return result.exit_code, result.output


def report(*args: str | Path) -> tuple[int, dict[str, Any]]:
    code, output = validate(*args, "--json")
    assert code in (0, 1, 3), output
    return code, json.loads(output)


@pytest.fixture
def rows(tmp_path: Path) -> Path:
    path = tmp_path / "rows.npz"
    np.savez(path, x=features())
    return path


def test_a_candidate_identical_to_the_baseline_passes(tmp_path: Path, rows: Path) -> None:
    base, same = linear(tmp_path / "base.onnx"), linear(tmp_path / "same.onnx", note="retrained, same")
    code, found = report(same, "--baseline", base, "--data", rows, "--batch-size", "64")
    assert code == 0
    assert found["outcome"] == "pass"
    summary = found["summary"]
    assert (summary["rows"], summary["compared"], summary["agreement"], summary["max_abs_diff"]) == (
        500,
        500,
        1.0,
        0,
    )
    assert summary["latency"]["candidate"]["calls"] == 8  # 500 rows in batches of 64
    assert [g["outcome"] for g in found["gates"]] == ["pass", "pass", "pass"]
    assert found["candidate"]["sha256"] != found["baseline"]["sha256"]


def test_the_same_artifact_twice_is_refused_unless_asked(tmp_path: Path, rows: Path) -> None:
    base = linear(tmp_path / "base.onnx")
    code, output = validate(base, "--baseline", base, "--data", rows)
    assert code == 2
    assert "are the same artifact" in output
    assert report(base, "--baseline", base, "--data", rows, "--allow-same")[0] == 0


def test_a_flipped_sign_fails_the_agreement_gate(tmp_path: Path, rows: Path) -> None:
    base, flipped = linear(tmp_path / "base.onnx"), linear(tmp_path / "flip.onnx", sign=-1.0)
    code, found = report(flipped, "--baseline", base, "--data", rows)
    assert code == 1
    gate = next(g for g in found["gates"] if g["gate"] == "min_agreement")
    assert (gate["outcome"], gate["value"]) == ("fail", 0.0)  # argmax of -y is never argmax of y
    worst = found["examples"][0]
    assert worst["disagreed"]
    assert worst["candidate"]["y"] == pytest.approx([-v for v in worst["baseline"]["y"]])
    x = np.load(rows)["x"][worst["row"]]
    assert worst["inputs"]["x"] == pytest.approx(x.tolist())


def _by_hand(correct_b: np.ndarray, correct_c: np.ndarray) -> tuple[float, float, float]:
    """The difference in accuracy and its 95 % paired percentile bootstrap interval, written out."""
    rng = np.random.default_rng(0)
    n = len(correct_b)
    differences = []
    for _ in range(1000):
        index = rng.integers(0, n, size=n)
        differences.append(correct_c[index].mean() - correct_b[index].mean())
    low, high = np.quantile(differences, [0.025, 0.975])
    return float(correct_c.mean() - correct_b.mean()), float(low), float(high)


def test_labels_give_each_accuracy_and_the_difference_with_its_interval(tmp_path: Path) -> None:
    x = features(400, seed=1)
    labels = (x[:, 0] > 0.1).astype(np.int64)
    np.savez(tmp_path / "labelled.npz", x=x, truth=labels)
    policy = tmp_path / "policy.yaml"
    policy.write_text("min_agreement: 0.5\nmax_accuracy_drop: 0.01\n")
    code, found = report(
        f"{MODELS}:CutAtThreeTenths", "--baseline", f"{MODELS}:CutAtZero",
        "--data", tmp_path / "labelled.npz", "--labels", "truth", "--policy", policy,
    )  # fmt: skip
    correct_b = ((x[:, 0] > 0.0).astype(np.int64) == labels).astype(float)
    correct_c = ((x[:, 0] > 0.3).astype(np.int64) == labels).astype(float)
    difference, low, high = _by_hand(correct_b, correct_c)
    scored = found["summary"]["labels"]
    assert (scored["metric"], scored["output"], scored["rows"]) == ("accuracy", "label", 400)
    assert scored["baseline"] == pytest.approx(correct_b.mean())
    assert scored["candidate"] == pytest.approx(correct_c.mean())
    assert scored["difference"] == pytest.approx(difference)
    assert scored["ci"] == pytest.approx([low, high])
    # And against the normal approximation of a paired difference: close, as it should be.
    d = correct_c - correct_b
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d))
    assert scored["ci"] == pytest.approx([difference - half, difference + half], abs=0.01)
    assert high < -0.01  # the whole interval is below the margin: the gate fails
    gate = next(g for g in found["gates"] if g["gate"] == "max_accuracy_drop")
    assert (code, gate["outcome"], gate["interval"]) == (1, "fail", pytest.approx([low, high]))


def test_regression_labels_give_rmse(tmp_path: Path) -> None:
    x = features(300, seed=2)
    target = x.sum(axis=1).astype(np.float64) + np.random.default_rng(3).normal(0, 0.1, 300)
    np.savez(tmp_path / "target.npz", x=x, target=target)
    policy = tmp_path / "policy.yaml"
    policy.write_text("min_agreement: 0\nmax_rmse_increase: 0.1\n")
    code, found = report(
        f"{MODELS}:NoisySum", "--baseline", f"{MODELS}:Sum", "--data", tmp_path / "target.npz",
        "--labels", "target", "--policy", policy,
    )  # fmt: skip
    scored = found["summary"]["labels"]
    predicted = x.sum(axis=1).astype(np.float64)
    rmse_b = float(np.sqrt(np.mean((predicted - target) ** 2)))
    rmse_c = float(np.sqrt(np.mean((predicted + 0.5 - target) ** 2)))
    assert scored["metric"] == "rmse"
    assert (scored["baseline"], scored["candidate"]) == (pytest.approx(rmse_b), pytest.approx(rmse_c))
    assert scored["ci"][0] > 0.1  # about +0.4: beyond the margin
    assert code == 1


def test_rows_a_version_fails_are_isolated_and_counted(tmp_path: Path) -> None:
    x = features(200, seed=4)
    np.savez(tmp_path / "rows.npz", x=x)
    failing = int((x[:, 0] > 2).sum())
    assert 0 < failing < 20
    code, found = report(
        f"{MODELS}:FragileSum", "--baseline", f"{MODELS}:Sum", "--data", tmp_path / "rows.npz"
    )
    summary = found["summary"]
    assert summary["errors"] == {"baseline": 0, "candidate": failing}
    assert summary["compared"] == 200  # batch-mates of a bad row were still compared
    assert summary["agreed"] == 200 - failing  # a failed row is a wrong answer too
    assert found["errors"]["candidate"] == {
        "model 'sum_fragile' failed in predict: ValueError: first feature out of range": failing
    }
    gate = next(g for g in found["gates"] if g["gate"] == "max_error_rate")
    assert (code, gate["outcome"], gate["value"]) == (1, "fail", pytest.approx(failing / 200))


def test_too_few_rows_is_inconclusive_exit_3(tmp_path: Path, rows: Path) -> None:
    base, same = linear(tmp_path / "base.onnx"), linear(tmp_path / "same.onnx", note="copy")
    policy = tmp_path / "policy.yaml"
    policy.write_text("min_rows: 1000\n")
    code, found = report(same, "--baseline", base, "--data", rows, "--policy", policy)
    assert (code, found["outcome"], found["gates"][0]["outcome"]) == (3, "inconclusive", "inconclusive")
    policy.write_text("max_accuracy_drop: 0.01\n")  # a gate without its data is inconclusive
    code, found = report(same, "--baseline", base, "--data", rows, "--policy", policy)
    assert (code, found["outcome"]) == (3, "inconclusive")
    assert found["gates"][-1]["reason"] == "no labels"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "rows.txt"], "unknown data format"),
        (["--data", "missing.npz"], "no such data file"),
        (["--data", "rows.npz", "--policy", "policy.yaml"], "min_agreement"),
        (["--data", "rows.npz", "--labels", "nope"], "no label column 'nope'"),
        (["--data", "rows.npz", "--baseline", "missing.onnx"], "no such model file"),
        (["--data", "rows.npz", "--batch-size", "0"], "batch-size"),
        (["--data", "text.parquet"], "text.parquet: not a readable Parquet file"),
        (["--data", "latin1.csv"], "latin1.csv: not UTF-8 text"),
        (["--data", "cut.npz"], "cut.npz: not a readable .npz file"),
        (["--data", "rows.npz", "--html", "missing/report.html"], "--html missing/report.html: cannot write"),
        (["--data", "rows.npz", "--html", "."], "--html .: cannot write"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    np.savez(tmp_path / "rows.npz", x=features(10))
    (tmp_path / "text.parquet").write_text("x\n1\n")
    (tmp_path / "latin1.csv").write_bytes("x,café\n1,2\n".encode("latin-1"))
    (tmp_path / "cut.npz").write_bytes((tmp_path / "rows.npz").read_bytes()[:-40])
    (tmp_path / "rows.txt").write_text("x\n1\n")
    (tmp_path / "policy.yaml").write_text("min_agreement: 2\n")
    linear(tmp_path / "base.onnx")
    linear(tmp_path / "cand.onnx", note="c")
    full = ["--baseline", "base.onnx", *args] if "--baseline" not in args else args
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        code, output = validate("cand.onnx", *full)
    assert code == 2, output
    assert message in output
    assert "Traceback" not in output


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.links += [v or "" for k, v in attrs if k in ("src", "href")]


def test_the_html_report_is_self_contained(tmp_path: Path) -> None:
    x = features(300, seed=5)
    np.savez(tmp_path / "rows.npz", x=x, truth=(x[:, 0] > 0).astype(np.int64))
    page = tmp_path / "report.html"
    code, output = validate(
        f"{MODELS}:CutAtThreeTenths", "--baseline", f"{MODELS}:CutAtZero", "--data", tmp_path / "rows.npz",
        "--labels", "truth", "--html", page,
    )  # fmt: skip
    assert code == 1, output
    assert "verdict: FAIL" in output  # the terminal table
    text = page.read_text()
    parser = _Page()
    parser.feed(text)
    assert parser.links == []  # no stylesheet, script, image or font from anywhere
    assert "script" not in parser.tags
    assert re.findall(r"https?://[^'\"]*", text) == ["http://www.w3.org/2000/svg"] * text.count("<svg")
    assert text.count("<svg") == 2  # one difference histogram per numeric output (label, proba)
    for part in (
        "Confusion between versions",
        "rows: baseline's class",
        "Worst rows",
        "baseline answered",
    ):
        assert part in text


def test_an_unexpected_error_is_one_line_and_exit_2_not_a_fail(
    tmp_path: Path, rows: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("inputs")

    monkeypatch.setattr(offline, "run_validation", broken)
    base, cand = linear(tmp_path / "base.onnx"), linear(tmp_path / "cand.onnx", note="c")
    code, output = validate(cand, "--baseline", base, "--data", rows)
    assert code == 2, output
    assert output.splitlines()[-1] == "modelyard: cannot validate: KeyError: 'inputs'"
    assert "Traceback" not in output


def test_a_registry_that_fails_to_record_loses_no_report(
    tmp_path: Path, rows: Path, cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with Registry(ControlSettings(home=Path(cli_env["MODELYARD_HOME"]))) as registry:
        registry.push(linear(tmp_path / "base.onnx"), name="spam", aliases=["production"])
        registry.push(linear(tmp_path / "good.onnx", note="retrained"), name="spam", aliases=["staging"])

    def gone(*args: object, **kwargs: object) -> None:
        raise OperationalError("INSERT INTO validations", {}, Exception("disk I/O error"))

    monkeypatch.setattr(Registry, "record_validation", gone)
    page = tmp_path / "report.html"
    args = ["validate", "spam@staging", "--baseline", "spam@production", "--data", rows, "--html", page]
    result = CliRunner().invoke(app, list(map(str, args)), env=cli_env)
    assert result.exit_code == 2, result.output
    assert "verdict: PASS" in result.output  # the report, shown before the verdict was recorded
    assert "control-plane database error" in result.output
    assert "verdict: pass" in page.read_text()
