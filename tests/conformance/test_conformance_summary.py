"""The Markdown summary and the known-findings (``--xfails-file``) handling of the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conformance.cli import main
from conformance.expectations import mark_expected, read_entries
from conformance.report.markdown import render_markdown
from conformance.report.schema import SCHEMA, SCHEMA_VERSION


def _case(cid: str, verdict: str, **kw: Any) -> dict[str, Any]:
    adapter, rest = cid.split("[", 1)
    impl = rest.split("]", 1)[0]
    case: dict[str, Any] = {
        "id": cid,
        "adapter": adapter,
        "implementation": impl,
        "device": "cpu",
        "dtype": "float64",
        "scenario": "basic",
        "mode": "free",
        "profile": "torch",
        "seed": 0,
        "steps": 3,
        "verdict": verdict,
        "acceptable_flag": None,
        "metrics": {"w": {"max_abs": 1e-6, "max_rel": 2.5e-6, "max_ulp": 9.0}},
        "bound": {},
        "first_divergence": None,
        "diagnosis": None,
        "error": None,
        "repro": f"adamw-conformance run --adapter {adapter} | x",
        "series": {"step": [1], "err": [7.0]},
        "duration_s": 0.1,
    }
    case.update(kw)
    return case


def _report(cases: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "envelope": {
            "suite_version": "0",
            "spec_version": "1",
            "commit": "abc",
            "created": "2026-01-01",
            "command": "adamw-conformance run",
            "python": "3.11",
            "platform": "linux",
            "frameworks": {"torch": "2"},
            "devices": [{"kind": "cpu", "model": "x", "driver": None, "runtime": None}],
            "precision": {},
            "seeds": [0],
            "env": {},
        },
        "cases": cases,
    }


def test_markdown_lists_counts_and_every_finding_sorted() -> None:
    cases = [
        _case("torch[fused]-cpu-float64-basic-free-s0", "within_bound"),
        _case(
            "b[x]-cpu-float64-basic-free-s0",
            "divergent",
            first_divergence={
                "step": 4,
                "param": "w",
                "index": [1],
                "expected": 1.0,
                "got": 1.1,
                "abs_err": 0.1,
                "ulp": 3.0,
            },
            diagnosis={
                "explained_by": "profile keras3",
                "kind": "profile",
                "detail": "matches profile keras3",
                "candidates": [],
            },
        ),
        _case("a[y]-cpu-float64-basic-free-s0", "error", error="RuntimeError: boom"),
    ]
    text = render_markdown(_report(cases), title="T")
    assert text.startswith("# T\n")
    # one verdict row per adapter/impl/device/dtype, counts in the verdict's column
    assert "| torch | fused | cpu | float64 |  | 1 |" in text
    findings = text.split("## Findings")[1]
    assert findings.index("a[y]") < findings.index("b[x]")  # sorted
    assert "step 4, w[1]" in findings and "matches profile keras3" in findings
    assert "2.5e-06" in findings and "| 7 |" in findings  # max rel err and x bound
    assert "\\|" in findings  # the '|' in the repro command is escaped
    assert "within_bound" not in findings
    assert render_markdown(_report(cases), title="T") == text  # deterministic


def test_no_findings_says_none() -> None:
    text = render_markdown(_report([_case("t[i]-cpu-float64-basic-free-s0", "exact")]))
    assert text.rstrip().endswith("None.")


def test_mark_expected_flags_matches_and_reports_fixed_and_not_run(tmp_path: Path) -> None:
    f = tmp_path / "known.txt"
    f.write_text(
        "# comment\nk[d]-cpu-float64-  # trailing comment\nz[q]-cuda-\nt[i]-cpu-float64-basic\n",
        encoding="utf-8",
    )
    entries = read_entries(str(f))
    assert entries == ["k[d]-cpu-float64-", "z[q]-cuda-", "t[i]-cpu-float64-basic"]
    cases = [
        _case("k[d]-cpu-float64-basic-free-s0", "divergent"),
        _case("t[i]-cpu-float64-basic-free-s0", "within_bound"),
        _case("u[j]-cpu-float64-basic-free-s0", "divergent"),
    ]
    fixed, not_run = mark_expected(cases, entries)
    assert cases[0]["expected"] == "k[d]-cpu-float64-"
    assert "expected" not in cases[1] and "expected" not in cases[2]
    assert fixed == ["t[i]-cpu-float64-basic"] and not_run == ["z[q]-cuda-"]


def test_cli_summary_writes_markdown(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "report.json").write_text(
        json.dumps(_report([_case("t[i]-cpu-float64-basic-free-s0", "divergent")])), encoding="utf-8"
    )
    out = tmp_path / "s.md"
    assert main(["summary", str(tmp_path / "r"), "--title", "X", "--md", str(out)]) == 0
    assert out.read_text(encoding="utf-8").startswith("# X")


@pytest.mark.parametrize(("known", "status"), [("", 1), ("-cpu-float64-eps_dominated-free-", 0)])
def test_run_exit_status_honours_known_findings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, known: str, status: int
) -> None:
    # A planted eps-placement bug, plugged in through the adapter protocol, diverges; listed as
    # a known finding it stays in the report (marked expected) and no longer fails the exit code.
    pytest.importorskip("numpy")
    (tmp_path / "planted_known.py").write_text(
        "from adapters.reference.adapter import planted_adapter\n"
        "def factory():\n    return planted_adapter('eps_placement', 'before_bias_correction')\n"
    )
    root = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{root}")
    monkeypatch.syspath_prepend(str(tmp_path))
    f = tmp_path / "known.txt"
    f.write_text(known + "\n", encoding="utf-8")
    out = tmp_path / "out"
    rc = main(
        [
            "run",
            "--adapter",
            "planted_known:factory",
            "--scenario",
            "eps_dominated",
            "--dtype",
            "float64",
            "--mode",
            "free",
            "--out",
            str(out),
            "--no-progress",
            "--no-render",
            "--no-diagnose",
            "--xfails-file",
            str(f),
        ]
    )
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    divergent = [c for c in report["cases"] if c["verdict"] == "divergent"]
    assert divergent, [(c["id"], c["verdict"], c.get("error")) for c in report["cases"]]
    assert rc == status
    assert all(bool(c.get("expected")) == (status == 0) for c in divergent)


def test_markdown_marks_known_findings_apart() -> None:
    cases = [
        _case("k[d]-cpu-float64-basic-free-s0", "divergent", expected="k[d]-cpu-float64- (torch==2.13.0)"),
        _case("t[i]-cpu-float64-basic-free-s0", "within_bound"),
    ]
    text = render_markdown(_report(cases))
    findings, known = text.split("## Findings")[1].split("## Known findings")
    assert "None." in findings and "k[d]-cpu-float64-basic" not in findings
    assert "`k[d]-cpu-float64- (torch==2.13.0)` | 1 |" in known
    header = next(ln for ln in text.splitlines() if ln.startswith("| adapter | implementation"))
    assert "| known |" in header  # its own column, never counted as divergent
    assert "Exit status 0" in text.split("## Outcome")[1]
