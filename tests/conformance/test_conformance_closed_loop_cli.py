"""``adamw-conformance run --closed-loop`` appends the closed-loop cases to the same report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance.cli import main


def test_run_closed_loop_appends_cases(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    out = tmp_path / "out"
    rc = main(
        [
            "run",
            "--adapter",
            "torch",
            "--implementation",
            "foreach",
            "--scenario",
            "basic",
            "--dtype",
            "float64",
            "--mode",
            "free",
            "--out",
            str(out),
            "--no-progress",
            "--no-render",
            "--no-diagnose",
            "--closed-loop",
            "--closed-loop-steps",
            "10",
        ]
    )
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    loop = [c for c in report["cases"] if c["mode"] == "closed_loop"]
    assert {c["scenario"] for c in loop} == {"logreg", "mlp"}, [c["id"] for c in loop]
    # torch with its own profile: rounding-level agreement over 10 steps, not a finding
    assert all(c["verdict"] in ("exact", "within_bound", "acceptable") for c in loop), loop
    assert rc == 0
    open_loop = [c for c in report["cases"] if c["mode"] == "free"]
    assert open_loop and all(c["adapter"] == "torch" for c in open_loop)
