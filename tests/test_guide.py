"""Every code block of docs/testing-your-optimizer.md runs: the files it shows are written into a
scratch directory, and each ``$ command`` runs there with the exit status the page says (0, or
the ``# exit N`` at the end of the line)."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "testing-your-optimizer.md"
FENCE = re.compile(r'^```(\w+)(?: title="([^"]+)")?\n(.*?)^```', re.M | re.S)
#: A command that mentions one of these needs that framework.
NEEDS = {"torch": ("torch:", "torch_adamw"), "optax": ("optax",), "keras": ("keras",)}


def _blocks() -> list[tuple[str, str | None, str]]:
    return [(m.group(1), m.group(2), m.group(3)) for m in FENCE.finditer(GUIDE.read_text(encoding="utf-8"))]


def _commands() -> list[tuple[str, int]]:
    out = []
    for lang, _, body in _blocks():
        if lang != "console":
            continue
        for line in body.splitlines():
            if line.startswith("$ "):
                cmd, _, note = line[2:].partition("  # ")
                code = int(note.split()[1]) if note.startswith("exit ") else 0
                out.append((cmd.strip(), code))
    return out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("guide")
    for lang, title, body in _blocks():
        if lang == "python" and title:
            target = work / title
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(body, encoding="utf-8")
    for pkg in {p.parent for p in work.rglob("*.py")}:
        (pkg / "__init__.py").touch()
    return work


def test_the_guide_has_its_blocks() -> None:
    titles = [t for lang, t, _ in _blocks() if lang == "python"]
    assert "mypkg/numpy_adamw.py" in titles and "mypkg/adapter.py" in titles
    assert len(_commands()) >= 8


@pytest.mark.parametrize(
    "title,body",
    [(t, b) for lang, t, b in _blocks() if lang == "python"],
    ids=[t or "untitled" for lang, t, _ in _blocks() if lang == "python"],
)
def test_python_blocks_compile(title: str, body: str) -> None:
    compile(body, title or "<guide>", "exec")


@pytest.mark.parametrize("cmd,code", _commands(), ids=[c for c, _ in _commands()])
def test_command_runs_as_documented(workdir: Path, cmd: str, code: int) -> None:
    for module, marks in NEEDS.items():
        if any(m in cmd for m in marks) and importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")
    argv = shlex.split(cmd)
    if argv[0] == "adamw-conformance":
        argv = [sys.executable, "-m", "conformance.cli", *argv[1:]]
        if argv[3] == "run":
            argv.append("--force")  # the module-scoped directory may hold an earlier run
    elif argv[:3] == ["python", "-m", "pytest"]:
        argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *argv[3:]]
    env = {**os.environ, "COLUMNS": "80", "PYTHONPATH": str(workdir)}
    res = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, timeout=900, env=env)
    assert res.returncode == code, f"{cmd}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    assert "Traceback" not in res.stderr
