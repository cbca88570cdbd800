"""Report renderers: terminal, PNG plots, the self-contained HTML page (its markup; how it looks
in a browser: test_html_browser.py)."""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("rich")
pytest.importorskip("matplotlib")
pytest.importorskip("jinja2")

from conformance.report import outcome
from conformance.report.html import render_html
from conformance.report.plots import render_plots
from conformance.report.terminal import render_terminal
from conformance.report.text import fmt, fmt_exact, real

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NASTY_REPRO = "pytest -k 'torch<foreach>' && echo \"a&b\" <script>alert(1)</script>"


def _case(verdict: str, scenario: str = "basic", **kw: Any) -> dict[str, Any]:
    case: dict[str, Any] = {
        "id": f"torch[foreach]-cpu-float32-{scenario}-free-s0-{verdict}",
        "adapter": "torch",
        "implementation": "foreach",
        "device": "cpu",
        "dtype": "float32",
        "scenario": scenario,
        "mode": "free",
        "profile": "torch",
        "seed": 0,
        "steps": 5,
        "verdict": verdict,
        "acceptable_flag": None,
        "metrics": {"w": {"max_abs": 1e-7, "max_rel": 1e-6, "max_ulp": 2.0}},
        "bound": {"kind": "ref_vs_impl"},
        "first_divergence": None,
        "diagnosis": None,
        "error": None,
        "repro": "python -m conformance run --case x",
        "series": {"step": [1, 2, 3, 4, 5], "err": [0.1, 0.2, 0.05, 0.3, 0.2]},
        "duration_s": 0.1,
    }
    case.update(kw)
    return case


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    cases = [
        _case("within_bound"),
        _case("within_bound", scenario="schedule"),
        _case("acceptable", scenario="schedule", acceptable_flag="bias_correction_offset"),
        _case(
            "divergent",
            scenario="amsgrad",
            repro=NASTY_REPRO,
            metrics={"w": {"max_abs": float("nan"), "max_rel": float("nan"), "max_ulp": float("nan")}},
            series={"step": [1, 2, 3], "err": [0.5, float("nan"), 4.0]},
            first_divergence={
                "step": 2,
                "param": "w",
                "index": [0],
                "expected": 1.0,
                "got": float("nan"),
                "abs_err": float("nan"),
                "ulp": float("nan"),
            },
            diagnosis={
                "explained_by": None,
                "kind": None,
                "detail": "<b>unexplained</b>",
                "candidates": [{"name": "eps_placement=inside", "score": 3.0}],
            },
        ),
        {
            "id": "optax-error",
            "adapter": "optax",
            "verdict": "error",
            "error": "RuntimeError: <boom>",
            "scenario": "basic",
        },  # most fields missing
        _case(
            "skipped",
            adapter="mlx",
            implementation="default",
            error="no amsgrad",
            series={"step": [], "err": []},
        ),
        _case(
            "exact",
            adapter="reference",
            implementation="binary64",
            dtype="float64",
            series={"step": [1, 2], "err": [0.0, 0.0]},
        ),  # zero errors: nothing on log y
    ]
    return {
        "schema": "adamw-conformance/report",
        "schema_version": "1.0",
        "envelope": {
            "suite_version": "0.1",
            "commit": None,
            "command": "run <all>",
            "frameworks": {"torch": "2.13.0"},
            "devices": [{"kind": "cpu", "model": "x86"}],
        },
        "cases": cases,
    }


def test_terminal_renders_every_status_and_the_closing_sentence(report: dict[str, Any]) -> None:
    # the terminal layout belongs to terminal.py's own tests; here: it renders this report
    # (missing fields, NaN) and ends with the shared closing sentence
    from rich.console import Console

    con = Console(record=True, width=240)
    render_terminal(report, con)
    text = con.export_text()
    assert outcome.closing_sentence(report) in " ".join(text.split())
    assert "nan" in text  # NaN max ulp shown, not crashed on


def test_plots_are_valid_pngs(report: dict[str, Any], tmp_path: Path) -> None:
    paths = render_plots(report, tmp_path)
    names = [p.name for p in paths]
    assert names == ["scenario-amsgrad.png", "scenario-basic.png", "scenario-schedule.png", "verdicts.png"]
    for p in paths:
        assert p.read_bytes()[:8] == PNG_MAGIC


def test_plots_drawn_in_parallel_are_the_same_files(report: dict[str, Any], tmp_path: Path) -> None:
    one = render_plots(report, tmp_path / "one", jobs=1)
    three = render_plots(report, tmp_path / "three", jobs=3)
    assert [p.name for p in one] == [p.name for p in three]
    for a, b in zip(one, three, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


class _Page(HTMLParser):
    """Tags, attributes and text of a page, as a browser's parser sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._stack:
            while self._stack.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        if not set(self._stack) & {"script", "style"}:
            self.text.append(data)

    def all_text(self) -> str:
        return " ".join(" ".join(self.text).split())


def _parse(page: str) -> _Page:
    p = _Page()
    p.feed(page)
    return p


def test_html_is_self_contained_and_escaped(report: dict[str, Any], tmp_path: Path) -> None:
    page = render_html(report, tmp_path).read_text(encoding="utf-8")
    parsed = _parse(page)
    # report text is data, never markup: the nasty command reads back literally and adds no tag
    assert "<script>alert(1)" not in page and "<b>unexplained</b>" not in page
    assert "&lt;b&gt;unexplained&lt;/b&gt;" in page and "RuntimeError: &lt;boom&gt;" in page
    assert NASTY_REPRO in parsed.all_text()
    assert any(a.get("data-copy") == NASTY_REPRO for _, a in parsed.tags)
    assert [t for t, _ in parsed.tags].count("script") == 1  # the page's own inline script
    assert not [a for t, a in parsed.tags if t == "b" and "unexplained" in str(a)]
    # self-contained: inline style and script, images as data: URIs, nothing fetched
    assert not [t for t, a in parsed.tags if t in ("script", "iframe", "embed", "object") and "src" in a]
    assert not [t for t, _ in parsed.tags if t == "link"]
    images = [a["src"] for t, a in parsed.tags if t == "img"]
    assert len(images) == 4 and all(str(s).startswith("data:image/png;base64,") for s in images)
    assert not re.search(r"(src|href)=\"(https?:)?//", page) and not re.search(r"url\(", page)
    assert "https://" not in page and "http://" not in page
    text = parsed.all_text()
    assert "bias_correction_offset" in text and "2.13.0" in text


def test_html_headline_matrix_and_statuses(report: dict[str, Any], tmp_path: Path) -> None:
    page = render_html(report, tmp_path, plots=[]).read_text(encoding="utf-8")
    text = _parse(page).all_text()
    assert outcome.headline(report) in text
    # the unexpected cases follow the headline on this page
    assert outcome.closing_sentence(report).replace("listed above", "listed below") in text
    assert text.index(outcome.headline(report)) < text.index("Implementation × dtype")
    assert text.index("Implementation × dtype") < text.index("Unexpected divergences and errors (2)")
    assert text.index("Unexpected divergences and errors") < text.index("All cases (7)")
    assert text.index("All cases (7)") < text.index("Envelope") < text.index("Plots")
    m = outcome.matrix(report)
    for row in m.rows:
        for col in m.columns:
            if m.cell(row, col):
                assert outcome.cell_text(m.cell(row, col)) in text
    for status in ("exact", "within_bound", "acceptable", "divergent", "error", "skipped"):
        assert re.search(rf'class="badge st-{status}"[^>]*>{status}</span>', page), status


def test_html_known_finding_is_known_not_divergent(report: dict[str, Any], tmp_path: Path) -> None:
    known = dict(_case("divergent", scenario="maximize"), expected="torch[foreach]-cpu-float32-maximize-")
    page = render_html({**report, "cases": [*report["cases"], known]}, tmp_path, plots=[])
    html_text = page.read_text(encoding="utf-8")
    body = html_text[html_text.index('data-st="known"') :]
    body = body[: body.index("</tbody>")]
    assert 'class="badge st-known"' in body and "st-divergent" not in body
    assert "torch[foreach]-cpu-float32-maximize-" in body
    text = _parse(html_text).all_text()
    assert "Known findings (1 case, 1 entry)" in text
    assert "1 known finding" in text and "Exit status 1: 2 cases" in text  # the other two still fail


def test_html_numbers_every_digit_and_nonfinite_words(report: dict[str, Any], tmp_path: Path) -> None:
    got, expected = 0.1 + 0.2, 0.3  # differ in the 17th significant digit
    close = _case(
        "divergent",
        scenario="close",
        first_divergence={"step": 3, "param": "w", "index": [1], "got": got, "expected": expected},
        metrics={
            "w": {"max_abs": "nan", "max_rel": 1.7976931348623157e308, "max_ulp": "-inf"},
            "b": {"max_abs": float("inf"), "max_rel": "inf", "max_ulp": 2.0},
        },
        series={"step": [1, 2, 3], "err": [0.5, "nan", 1.7976931348623157e308]},
        bound={"kind": "ref_vs_impl", "max_ratio": 1.7976931348623157e308},
    )
    exact = _case(
        "exact", scenario="exact_but_ulps", metrics={"w": {"max_abs": 1e-7, "max_rel": 1e-7, "max_ulp": 9.02}}
    )
    page = render_html({**report, "cases": [close, exact]}, tmp_path, plots=[]).read_text(encoding="utf-8")
    text = _parse(page).all_text()
    assert repr(got) in text and repr(expected) in text and repr(got) != repr(expected)
    assert "e+308" not in page and "1.8e+308" not in text
    metrics = re.search(r"<tr><td>w</td><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td></tr>", page)
    assert metrics and metrics.groups() == ("nan", "inf", "-inf")
    # the report says exact and 9.02 ulp: both shown, the ulp explained (binary64 reference), no
    # label contradicting either
    row = page[page.index('data-st="exact"') :]
    row = row[: row.index("</tr>")]
    assert ">exact</span>" in row
    ulp_cell = re.search(r'<td class="num" data-v="9.02" title="([^"]*)">(.*?)</td>', row)
    assert ulp_cell and "binary64" in ulp_cell.group(1)
    assert _parse(ulp_cell.group(2)).all_text() == "9.02"


@pytest.mark.parametrize(
    ("raw", "short", "full"),
    [
        (None, "-", "-"),
        ("nan", "nan", "nan"),
        (float("nan"), "nan", "nan"),
        ("inf", "inf", "inf"),
        ("-inf", "-inf", "-inf"),
        (1.7976931348623157e308, "inf", "inf"),
        (-1.7976931348623157e308, "-inf", "-inf"),
        (0.30000000000000004, "0.3", "0.30000000000000004"),
        (3, "3", "3"),
        (True, "-", "-"),
    ],
)
def test_number_formats(raw: Any, short: str, full: str) -> None:
    assert fmt(raw) == short and fmt_exact(raw) == full
    v = real(raw)
    assert (v is None) == (short == "-") and (v is None or math.isnan(v) == (short == "nan"))


@pytest.mark.parametrize("empty", [{}, {"cases": []}, {"cases": None, "envelope": None}])
def test_empty_reports_render(empty: dict[str, Any], tmp_path: Path) -> None:
    from rich.console import Console

    con = Console(record=True, width=120)
    render_terminal(empty, con)
    assert outcome.closing_sentence(empty) in con.export_text()
    paths = render_plots(empty, tmp_path)
    assert [p.name for p in paths] == ["verdicts.png"]
    assert paths[0].read_bytes()[:8] == PNG_MAGIC
    page = render_html(empty, tmp_path).read_text(encoding="utf-8")
    assert "No cases." in page and outcome.headline(empty) in page


def test_html_warns_about_an_unfinished_run(report: dict[str, Any], tmp_path: Path) -> None:
    envelope = {**report["envelope"], "status": "interrupted", "planned": 468}
    page = render_html({**report, "envelope": envelope}, tmp_path, plots=[]).read_text(encoding="utf-8")
    assert "This run was interrupted" in page and "7 of 468 planned cases are in the report" in page
    page = render_html(report, tmp_path, plots=[]).read_text(encoding="utf-8")
    assert "This run" not in page
