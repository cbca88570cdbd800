"""The architecture holds: one-way layers (``conformance`` -> ``adapters`` -> ``adamw_ref``), a
standard-library-only specification, no import cycles inside a package (import-linter, with the
contracts in pyproject.toml), no dynamic import of an upper layer, and a step that reads as the
algorithm (docs/architecture.md)."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("adamw_ref", "adapters", "conformance")
UPPER = {"adamw_ref": ("adapters", "conformance"), "adapters": ("conformance",)}


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.skip("import-linter is not installed in this environment")
    return subprocess.run(
        [str(exe), "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=300,
    )


def test_contracts_are_kept() -> None:
    res = _lint_imports(ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "3 kept, 0 broken" in res.stdout


# Each plant breaks exactly one contract: proof that the tool checks what the docs claim.
PLANTS = {
    "Layers": ("adapters/errors.py", "import conformance.tolerance\n"),
    "standard library": ("adamw_ref/formats.py", "import numpy\n"),
    "No import cycles": ("adapters/keras/capabilities.py", "import adapters.keras.run\n"),
}


@pytest.mark.parametrize("contract", sorted(PLANTS))
def test_a_planted_violation_breaks_its_contract(contract: str, tmp_path: Path) -> None:
    for name in (*PACKAGES, "tools"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    path, line = PLANTS[contract]
    target = tmp_path / path
    target.write_text(target.read_text() + "\n" + line)
    res = _lint_imports(tmp_path)
    assert res.returncode == 1, res.stdout[-3000:]
    assert "2 kept, 1 broken" in res.stdout, res.stdout[-3000:]
    broken = [ln for ln in res.stdout.splitlines() if ln.endswith("BROKEN")]
    assert len(broken) == 1 and contract in broken[0], broken


def _strings(path: Path) -> list[tuple[int, str]]:
    """Every string constant of a module except docstrings."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
        ):
            docs.add(id(body[0].value))
    return [
        (n.lineno, n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs
    ]


@pytest.mark.parametrize("layer", sorted(UPPER))
def test_no_dynamic_import_of_an_upper_layer(layer: str) -> None:
    # import-linter sees import statements; a module path in a string (importlib, find_spec,
    # "python -m", an adapter spec) would hide an upward dependency from it.
    found = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        for lineno, text in _strings(path):
            for upper in UPPER[layer]:
                if re.search(rf"(?<![\w/.-]){upper}(\.(?=[A-Za-z_])|:(?=[A-Za-z_])|$)", text):
                    found.append(f"{path.relative_to(ROOT)}:{lineno}: {text[:80]!r}")
    assert found == []


def _functions(path: Path) -> dict[str, int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        n.name: (n.end_lineno or n.lineno) - n.lineno + 1
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef)
    }


def test_step_reads_as_the_algorithm() -> None:
    # the update is a composition of short named phases; explain observes their results and is
    # not called from the arithmetic
    for name in ("step.py", "update.py"):
        path = ROOT / "adamw_ref" / name
        long = {f: n for f, n in _functions(path).items() if n > 60}
        assert long == {}, f"{name}: functions over 60 lines: {long}"
        assert "explain" not in {
            a.name.split(".")[-1]
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom | ast.Import)
            for a in node.names
        } | {
            getattr(node, "module", "") or ""
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom)
        }
    phases = [
        "effective_gradient",
        "decoupled_decay",
        "moments",
        "second_moment",
        "first_moment_hat",
        "direction",
        "apply_update",
    ]
    src = (ROOT / "adamw_ref" / "update.py").read_text()
    body = src[src.index("def update_parameter(") :]
    positions = [body.index(f"{p}(") for p in phases]
    assert positions == sorted(positions), "update_parameter calls the phases out of order"


def test_the_architecture_picture_is_current() -> None:
    pytest.importorskip("grimp")
    from tools.architecture_diagram import main

    assert main(["--check"]) == 0, "run: python -m tools.architecture_diagram"
