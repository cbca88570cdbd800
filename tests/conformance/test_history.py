"""``adamw-conformance matrix`` (conformance/history.py) on synthetic reports: release ordering,
where a finding appears and disappears, the Markdown and JSON, and bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conformance.history import Release, matrix_main, release_of, sort_releases
from conformance.report.schema import SCHEMA, SCHEMA_VERSION

SCENARIOS = ("basic", "tiny_magnitudes")


def _case(adapter: str, dtype: str, scenario: str, verdict: str, **kw: Any) -> dict[str, Any]:
    case: dict[str, Any] = {
        "id": f"{adapter}[default]-cpu-{dtype}-{scenario}-free-s0",
        "adapter": adapter,
        "implementation": "default",
        "device": "cpu",
        "dtype": dtype,
        "scenario": scenario,
        "mode": "free",
        "profile": "keras3",
        "seed": 0,
        "steps": 3,
        "verdict": verdict,
        "acceptable_flag": None,
        "metrics": {},
        "bound": {"max_ratio": 250.0} if verdict == "divergent" else {"max_ratio": 0.5},
        "first_divergence": {"step": 2} if verdict == "divergent" else None,
        "diagnosis": None,
        "error": None,
        "repro": "adamw-conformance run",
        "series": {"step": [], "err": []},
        "duration_s": 0.1,
    }
    case.update(kw)
    return case


def _write(
    root: Path, name: str, frameworks: dict[str, str], cases: list[dict[str, Any]], **sidecar: Any
) -> Path:
    d = root / name
    d.mkdir(parents=True)
    report = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "envelope": {"frameworks": frameworks, "created": "2026-11-25T00:00:00+00:00", "command": "x"},
        "cases": cases,
    }
    (d / "report.json").write_text(json.dumps(report), encoding="utf-8")
    if sidecar:
        (d / "matrix-env.json").write_text(json.dumps({"env": name, **sidecar}), encoding="utf-8")
    return d


def _keras(root: Path, keras: str, jax: str, tiny: str, *, f64: str = "within_bound") -> Path:
    """A keras-jax run: float64 basic, float32 basic and float32 tiny_magnitudes."""
    return _write(
        root,
        f"keras{keras.replace('.', '')}-jax",
        {"keras": keras, "jax": jax},
        [
            _case("keras-jax", "float64", "basic", f64),
            _case("keras-jax", "float32", "basic", "exact"),
            _case("keras-jax", "float32", "tiny_magnitudes", tiny),
        ],
        exit_status=1 if "divergent" in (tiny, f64) else 0,
        wall_s=12.0,
    )


def _run(tmp_path: Path, *reports: Path | str) -> tuple[int, dict[str, Any], str]:
    out_json, out_md = tmp_path / "h.json", tmp_path / "h.md"
    code = matrix_main([*(str(r) for r in reports), "--json", str(out_json), "--md", str(out_md)])
    assert code == 0
    return code, json.loads(out_json.read_text()), out_md.read_text()


def _finding(history: dict[str, Any], dtype: str, scenario: str) -> dict[str, Any]:
    (f,) = [f for f in history["findings"] if (f["dtype"], f["scenario"]) == (dtype, scenario)]
    return f


def test_a_finding_appears_and_disappears_in_release_order(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    # Given out of order; 3.10.0 must sort after 3.9.2 (a string sort puts it first).
    a = _keras(runs, "3.12.0", "0.7.1", "within_bound")
    b = _keras(runs, "3.10.0", "0.5.3", "divergent")
    c = _keras(runs, "3.9.2", "0.5.3", "within_bound")
    d = _keras(runs, "3.11.3", "0.7.1", "divergent")
    _, h, md = _run(tmp_path, a, b, c, d)
    (impl,) = h["implementations"]
    assert impl["implementation"] == "keras-jax[default]"
    assert [r["versions"]["keras"] for r in impl["releases"]] == ["3.9.2", "3.10.0", "3.11.3", "3.12.0"]
    f = _finding(h, "float32", "tiny_magnitudes")
    assert f["first_appears"] == "keras 3.10.0 · jax 0.5.3"
    assert f["disappears"] == ["keras 3.12.0 · jax 0.7.1"]
    assert f["states"]["keras 3.9.2 · jax 0.5.3"] == "absent"
    assert len(h["findings"]) == 1  # the conforming families are no findings
    assert impl["changes"] == [
        "keras 3.9.2 · jax 0.5.3 → keras 3.10.0 · jax 0.5.3: new: float32 tiny_magnitudes (divergent).",
        "keras 3.11.3 · jax 0.7.1 → keras 3.12.0 · jax 0.7.1: fixed: float32 tiny_magnitudes.",
    ]
    rows = [ln for ln in md.splitlines() if ln.startswith("| keras ")]
    assert rows[0].startswith("| keras 3.9.2 · jax 0.5.3 | ok 1 | ok 2 |")
    assert rows[1].startswith("| keras 3.10.0 · jax 0.5.3 | ok 1 | DIVERGENT 1, ok 1 |")
    assert "| keras-jax[default] | float32 | tiny_magnitudes | divergent | keras 3.10.0 · jax 0.5.3 |" in md
    assert "| keras 3.12.0 · jax 0.7.1 | gone |" in md


def test_present_from_the_oldest_release_and_still_present(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    old = _keras(runs, "3.0.5", "0.4.25", "within_bound", f64="divergent")
    new = _keras(runs, "3.15.1", "0.10.2", "within_bound", f64="divergent")
    _, h, md = _run(tmp_path, new, old)
    f = _finding(h, "float64", "basic")
    assert f["appears"] == ["keras 3.0.5 · jax 0.4.25"] and f["disappears"] == []
    assert (
        "keras 3.0.5 · jax 0.4.25 (oldest tested) | - | still present (divergent) | 250x bound, from step 2 |"
        in md
    )


def test_a_release_that_did_not_run_the_family_neither_starts_nor_ends_it(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    a = _keras(runs, "3.3.3", "0.4.26", "divergent")
    b = _keras(runs, "3.5.0", "0.4.31", "skipped")
    c = _write(
        runs, "k38", {"keras": "3.8.0", "jax": "0.4.38"}, [_case("keras-jax", "float64", "basic", "exact")]
    )
    d = _keras(runs, "3.10.0", "0.5.3", "divergent")
    _, h, _ = _run(tmp_path, a, b, c, d)
    f = _finding(h, "float32", "tiny_magnitudes")
    assert [f["states"][k] for k in f["states"]] == ["divergent", "skipped", "missing", "divergent"]
    assert f["appears"] == ["keras 3.3.3 · jax 0.4.26"] and f["disappears"] == []


def test_errors_and_known_findings_are_findings(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    tb = (
        "Traceback (most recent call last):\n  ...\nAttributeError: module 'optax' has no attribute 'tree'\n"
        "--------------------\nFor simplicity, JAX has removed its internal frames from the traceback.\n"
    )
    a = _write(
        runs,
        "optax017",
        {"optax": "0.1.7", "jax": "0.4.23"},
        [
            _case("optax", "float64", "amsgrad", "error", error=tb, implementation="jit"),
            _case("optax", "float32", "tiny_magnitudes", "divergent", implementation="jit", expected="x"),
        ],
    )
    b = _write(
        runs,
        "optax028",
        {"optax": "0.2.8", "jax": "0.10.2"},
        [
            _case("optax", "float64", "amsgrad", "within_bound", implementation="jit"),
            _case("optax", "float32", "tiny_magnitudes", "divergent", implementation="jit", expected="x"),
        ],
    )
    _, h, md = _run(tmp_path, b, a)
    err = _finding(h, "float64", "amsgrad")
    assert err["verdict"] == "error" and err["disappears"] == ["optax 0.2.8 · jax 0.10.2"]
    assert err["detail"] == "AttributeError: module 'optax' has no attribute 'tree'"
    known = _finding(h, "float32", "tiny_magnitudes")
    assert known["verdict"] == "divergent" and known["disappears"] == []
    # A report run without --strict shows the matched finding as `known` in the table.
    assert "| optax 0.1.7 · jax 0.4.23 | ERROR 1 | known 1 |" in md


def test_globs_and_the_sidecar(tmp_path: Path) -> None:
    runs = tmp_path / "out"
    _keras(runs, "3.0.5", "0.4.25", "divergent")
    _keras(runs, "3.3.3", "0.4.26", "within_bound")
    (runs / "notes.txt").write_text("not a report")
    _, h, md = _run(tmp_path, str(runs / "*"))
    assert [r["run"] for r in h["runs"]] == ["keras305-jax", "keras333-jax"]
    assert [r["exit_status"] for r in h["runs"]] == [1, 0]
    assert "| keras305-jax | keras 3.0.5, jax 0.4.25 | 3 | 1 | 12 s |" in md


def test_notes_are_inserted(tmp_path: Path) -> None:
    run = _keras(tmp_path / "runs", "3.0.5", "0.4.25", "within_bound")
    notes = tmp_path / "notes.md"
    notes.write_text("## What changed\n\nNothing, by hand.\n")
    out = tmp_path / "h.md"
    assert matrix_main([str(run), "--md", str(out), "--notes", str(notes), "--title", "T"]) == 0
    text = out.read_text()
    assert text.startswith("# T\n") and "## What changed\n\nNothing, by hand." in text
    assert "No case diverged or failed in any release." in text


def test_stdout_without_md(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _keras(tmp_path / "runs", "3.0.5", "0.4.25", "within_bound")
    assert matrix_main([str(run / "report.json")]) == 0
    assert capsys.readouterr().out.startswith("# Conformance history\n")


def test_release_ordering_uses_packaging_versions() -> None:
    rel = [
        release_of("optax", {"optax": v, "jax": j, "numpy": "2.0"})
        for v, j in [("0.2.10", "0.5.3"), ("0.2.9", "0.5.3"), ("0.1.7", "0.4.23"), ("0.2.9", "0.4.38")]
    ]
    assert [r.label for r in sort_releases(rel)] == [
        "optax 0.1.7 · jax 0.4.23",
        "optax 0.2.9 · jax 0.4.38",
        "optax 0.2.9 · jax 0.5.3",
        "optax 0.2.10 · jax 0.5.3",
    ]
    torch = [Release((("torch", v),)) for v in ("2.13.0+cpu", "2.4.1", "2.10.0")]
    assert [r.label for r in sort_releases(torch)] == ["torch 2.4.1", "torch 2.10.0", "torch 2.13.0+cpu"]
    # A plug-in adapter: every framework the report names, apart from adamw_ref and numpy.
    assert release_of("mypkg", {"numpy": "2", "adamw_ref": "0.1", "mypkg": "1.0"}).label == "mypkg 1.0"


def _bad(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = matrix_main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("adamw-conformance matrix: error: ")
    return err


def test_bad_inputs_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _keras(tmp_path / "runs", "3.0.5", "0.4.25", "within_bound")
    assert "no such file or directory" in _bad(tmp_path, capsys, [str(tmp_path / "nope")])
    assert "matches nothing" in _bad(tmp_path, capsys, [str(tmp_path / "zz*")])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no report.json" in _bad(tmp_path, capsys, [str(empty)])
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema": "something-else", "cases": []}))
    assert "is not a conformance report" in _bad(tmp_path, capsys, [str(other)])
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert "is not a conformance report" in _bad(tmp_path, capsys, [str(broken)])
    twin = _write(
        tmp_path / "twin",
        "k",
        {"keras": "3.0.5", "jax": "0.4.25"},
        [_case("keras-jax", "float64", "basic", "exact")],
    )
    assert "one report per release" in _bad(tmp_path, capsys, [str(good), str(twin)])
    assert "--notes" in _bad(tmp_path, capsys, [str(good), "--notes", str(tmp_path / "missing.md")])
    assert "--md" in _bad(tmp_path, capsys, [str(good), "--md", str(tmp_path)])
    assert "REPORT" in _bad(tmp_path, capsys, [])  # argparse: the reports are required


def test_a_finding_that_changes_from_error_to_divergent(tmp_path: Path) -> None:
    """Like Optax's scheduled weight decay: refused (an error) before 0.2.6, accepted but never
    advanced in 0.2.6 (divergent), right in 0.2.7."""
    runs = tmp_path / "runs"
    tb = "Traceback (most recent call last):\nTypeError: unsupported operand type(s) for *: 'function'"
    rows = {"0.2.4": ("error", {"error": tb}), "0.2.6": ("divergent", {}), "0.2.7": ("within_bound", {})}
    for v, (verdict, kw) in rows.items():
        case = _case("optax", "float64", "delayed_decay", verdict, implementation="jit", **kw)
        _write(runs, f"optax{v}", {"optax": v, "jax": "0.7.2"}, [case])
    _, h, md = _run(tmp_path, str(runs / "*"))
    f = _finding(h, "float64", "delayed_decay")
    assert list(f["states"].values()) == ["error", "divergent", "absent"]
    assert f["appears"] == ["optax 0.2.4 · jax 0.7.2"] and f["disappears"] == ["optax 0.2.7 · jax 0.7.2"]
    assert f["verdict"] == "error → divergent"
    assert f["detail"] == (
        "error: TypeError: unsupported operand type(s) for *: 'function'; divergent: 250x bound, from step 2"
    )
    assert h["implementations"][0]["changes"] == [
        "optax 0.2.4 · jax 0.7.2 → optax 0.2.6 · jax 0.7.2: "
        "changed: float64 delayed_decay (error → divergent).",
        "optax 0.2.6 · jax 0.7.2 → optax 0.2.7 · jax 0.7.2: fixed: float64 delayed_decay.",
    ]
    assert "| optax[jit] | float64 | delayed_decay | error → divergent |" in md


def test_families_with_the_same_history_share_a_markdown_row(tmp_path: Path) -> None:
    """An adapter that cannot run on an old release errors in every dtype: one row, not one per
    dtype (the JSON keeps one finding per implementation, dtype and scenario)."""
    runs = tmp_path / "runs"
    tb = "Traceback (most recent call last):\nAttributeError: module 'mlx.core' has no attribute 'float64'"
    for v, verdict, kw in (("0.21.1", "error", {"error": tb}), ("0.25.2", "within_bound", {})):
        cases = [_case("mlx", d, s, verdict, **kw) for d in ("float32", "float64") for s in SCENARIOS]
        _write(runs, f"mlx{v}", {"mlx": v}, cases)
    _, h, md = _run(tmp_path, str(runs / "*"))
    assert len(h["findings"]) == 4
    (row,) = [ln for ln in md.splitlines() if ln.startswith("| mlx[default] |")]
    assert row.startswith(
        "| mlx[default] | float64/float32 | basic, tiny_magnitudes | error | mlx 0.21.1 (oldest"
    )
    assert "fixed: float64/float32 basic, tiny_magnitudes." in md
