"""Report renderers: terminal table + summary, PNG plots, self-contained HTML."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("rich")
pytest.importorskip("matplotlib")

from conformance.report.html import render_html
from conformance.report.plots import render_plots
from conformance.report.terminal import render_terminal

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


def test_terminal_table_and_summary_counts(report: dict[str, Any]) -> None:
    from rich.console import Console

    con = Console(record=True, width=240)
    render_terminal(report, con)
    text = con.export_text()
    # counted by hand from the fixture: torch/foreach float32 has 2 within_bound, 1 acceptable,
    # 1 divergent; the optax row lacks implementation/dtype; mlx/default has one skipped
    assert "torch/foreach float32: 2 within_bound, 1 acceptable, 1 divergent" in text
    assert "mlx/default float32: 0 within_bound, 0 acceptable, 0 divergent, 1 skipped" in text
    assert "optax/? ?: 0 within_bound, 0 acceptable, 0 divergent, 1 error" in text
    assert "reference/binary64 float64: 1 exact, 0 within_bound, 0 acceptable, 0 divergent" in text
    for verdict in ("exact", "within_bound", "acceptable", "divergent", "error", "skipped"):
        assert verdict in text
    assert "nan" in text  # NaN max ulp shown, not crashed on


def test_plots_are_valid_pngs(report: dict[str, Any], tmp_path: Path) -> None:
    paths = render_plots(report, tmp_path)
    names = sorted(p.name for p in paths)
    assert names == ["scenario-amsgrad.png", "scenario-basic.png", "scenario-schedule.png", "verdicts.png"]
    for p in paths:
        assert p.read_bytes()[:8] == PNG_MAGIC


def test_html_is_self_contained_and_escaped(report: dict[str, Any], tmp_path: Path) -> None:
    path = render_html(report, tmp_path)
    page = path.read_text(encoding="utf-8")
    for verdict in ("exact", "within_bound", "acceptable", "divergent", "error", "skipped"):
        assert f">{verdict}</span>" in page
    assert html.escape(NASTY_REPRO, quote=True) in page
    assert "<script>" not in page and "<b>unexplained</b>" not in page
    assert "&lt;b&gt;unexplained&lt;/b&gt;" in page
    assert "RuntimeError: &lt;boom&gt;" in page
    assert "bias_correction_offset" in page and "2.13.0" in page
    images = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(images) == 4 and all(s.startswith("data:image/png;base64,") for s in images)
    assert not re.search(r'(src|href)="(https?:)?//', page)  # no external assets


@pytest.mark.parametrize("empty", [{}, {"cases": []}, {"cases": None, "envelope": None}])
def test_empty_reports_render(empty: dict[str, Any], tmp_path: Path) -> None:
    from rich.console import Console

    con = Console(record=True, width=120)
    render_terminal(empty, con)
    assert "no cases" in con.export_text()
    paths = render_plots(empty, tmp_path)
    assert [p.name for p in paths] == ["verdicts.png"]
    assert paths[0].read_bytes()[:8] == PNG_MAGIC
    page = render_html(empty, tmp_path).read_text(encoding="utf-8")
    assert "No cases." in page
