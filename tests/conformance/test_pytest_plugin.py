"""The pytest plug-in (conformance/pytest_plugin.py), each check in a pytest subprocess.

It is inactive unless asked for (``-p conformance.pytest_plugin``, ``PYTEST_PLUGINS``, or running
conformance/test_suite.py by path, whose conftest.py registers it), never registered twice, works
from any directory, refuses bad option values with one usage error, and plans exactly the cases of
``adamw-conformance run`` under the same selection.

``-p no:adamw_conformance`` blocks the plug-in's former ``pytest11`` entry point, which an install
made before it was removed still registers in every pytest run; after the removal it is a no-op.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.cli import main as cli_main
from conformance.pytest_plugin import ENV

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "conformance" / "test_suite.py"
NO_ENTRY_POINT = ["-p", "no:adamw_conformance"]
PLUGIN = ["-p", "conformance.pytest_plugin"]
PYARGS = ["--pyargs", "conformance.test_suite"]
HEADER = "adamw-conformance adapter:"
USAGE_ERROR = int(pytest.ExitCode.USAGE_ERROR)


def _pytest(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, *, python: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if k not in (ENV, "PYTEST_PLUGINS", "PYTEST_ADDOPTS")}
    e.update(env or {})
    return subprocess.run(
        [sys.executable, *python, "-m", "pytest", "-p", "no:cacheprovider", *NO_ENTRY_POINT, *args],
        cwd=cwd,
        env=e,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _out(r: subprocess.CompletedProcess[str]) -> str:
    return r.stdout + r.stderr


def _collected_ids(r: subprocess.CompletedProcess[str]) -> list[str]:
    assert r.returncode == 0, _out(r)
    marker = "::test_case["
    return sorted(line.split(marker, 1)[1][:-1] for line in r.stdout.splitlines() if marker in line)


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A directory outside the checkout, with an unrelated test file."""
    d = tmp_path / "project"
    d.mkdir()
    (d / "test_other.py").write_text("def test_other():\n    assert True\n")
    assert ROOT not in d.parents
    return d


def test_inactive_in_an_unrelated_project(elsewhere: Path) -> None:
    r = _pytest(["test_other.py"], elsewhere)
    assert r.returncode == 0, _out(r)
    assert "1 passed" in r.stdout
    assert "adamw-conformance" not in _out(r) and "--adamw" not in _out(r)
    r = _pytest(["--help"], elsewhere)
    assert r.returncode == 0 and "--adamw-adapter" not in r.stdout and "--adapter " not in r.stdout
    r = _pytest(["test_other.py", "--adamw-adapter", "reference"], elsewhere)
    assert r.returncode == USAGE_ERROR
    assert "unrecognized arguments: --adamw-adapter" in r.stderr


def test_active_where_asked_for_in_an_unrelated_project(elsewhere: Path) -> None:
    r = _pytest([*PLUGIN, "test_other.py", "--adamw-adapter", "reference"], elsewhere)
    assert r.returncode == 0, _out(r)
    assert f"{HEADER} reference" in r.stdout and "1 passed" in r.stdout
    r = _pytest([*PLUGIN, "--help"], elsewhere)
    assert r.returncode == 0, _out(r)
    for opt in ("--adamw-adapter", "--adamw-skips-file", "--adamw-xfails-file", "--adamw-seeds"):
        assert opt in r.stdout


def test_readme_command_from_another_directory(elsewhere: Path) -> None:
    r = _pytest([*PLUGIN, *PYARGS, "--adamw-scenario", "basic"], elsewhere, {ENV: "reference"})
    assert r.returncode == 0, _out(r)
    assert r.stdout.count(HEADER) == 1 and f"{HEADER} reference" in r.stdout
    assert "4 passed" in r.stdout  # basic: float64, float32 x free, teacher_forced
    assert "already registered" not in _out(r)


def test_plugin_spec_in_the_current_directory(elsewhere: Path) -> None:
    """``mymod:factory`` beside the caller loads as with the CLI, also where the current
    directory is not on sys.path (``python -P``, the ``pytest`` script)."""
    (elsewhere / "mymod.py").write_text(
        "from adapters.reference.adapter import planted_adapter\n"
        "def factory():\n    return planted_adapter('decay_scaling', 'unscaled')\n"
    )
    args = [*PLUGIN, *PYARGS, "--adamw-scenario", "basic", "--adamw-dtype", "float64"]
    for python in [(), ("-P",)]:
        r = _pytest(args, elsewhere, {ENV: "mymod:factory"}, python=python)
        assert r.returncode == 1, _out(r)
        assert f"{HEADER} mymod:factory" in r.stdout
        assert "2 failed" in r.stdout and "decay_scaling" in r.stdout


@pytest.mark.parametrize(
    ("args", "env"),
    [
        ([], {}),  # conftest.py beside the module registers it
        (PLUGIN, {}),  # -p and conftest.py: registered once
        ([], {"PYTEST_PLUGINS": "conformance.pytest_plugin"}),
        (PLUGIN, {"PYTEST_PLUGINS": "conformance.pytest_plugin"}),
    ],
    ids=["conftest", "p-and-conftest", "PYTEST_PLUGINS", "p-and-PYTEST_PLUGINS"],
)
@pytest.mark.parametrize("where", ["checkout", "elsewhere"])
def test_suite_by_path_registers_once(
    args: list[str], env: dict[str, str], where: str, elsewhere: Path
) -> None:
    cwd, suite = (ROOT, "conformance/test_suite.py") if where == "checkout" else (elsewhere, str(SUITE))
    sel = ["--adamw-adapter", "reference", "--adamw-scenario", "basic", "--adamw-dtype", "float64"]
    r = _pytest([*args, suite, *sel], cwd, env)
    assert r.returncode == 0, _out(r)
    assert "already registered" not in _out(r)
    assert r.stdout.count(HEADER) == 1  # one plug-in: one header
    assert "2 passed" in r.stdout


def test_pyargs_without_p_uses_the_conftest(elsewhere: Path) -> None:
    """pytest reads conformance/conftest.py only at collection here: the environment variable
    selects the adapter (the ``--adamw-*`` options need ``-p``)."""
    r = _pytest([*PYARGS, "-q"], elsewhere, {ENV: "reference"})
    assert r.returncode == 0, _out(r)
    assert "39 passed" in r.stdout  # the CLI's default plan for the reference
    r = _pytest([*PYARGS, "-q"], elsewhere, {ENV: "no_such_module:factory"})
    assert r.returncode == USAGE_ERROR, _out(r)
    assert "'no_such_module:factory' (from ADAMW_CONFORMANCE_ADAPTER) cannot be loaded" in _out(r)
    assert "Traceback" not in _out(r) and "pytest_plugin.py" not in _out(r)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--adamw-seeds", "5-2"], {}, "--adamw-seeds '5-2': range '5-2' is empty"),
        (["--adamw-seeds", "one"], {}, "--adamw-seeds 'one': 'one' is not an integer"),
        (["--adamw-seeds", "-1"], {}, "--adamw-seeds '-1': "),
        (
            ["--adamw-scenario", "basci"],
            {},
            "--adamw-scenario 'basci': unknown scenario (did you mean 'basic'?)",
        ),
        (["--adamw-quick", "--adamw-full"], {}, "--adamw-quick: cannot be combined with --adamw-full"),
        (["--adamw-implementation", "fast"], {}, "--adamw-implementation 'fast': adapter 'reference' has no"),
        (["--adamw-dtype", "float8"], {}, "--adamw-dtype 'float8': expected one of float64, float32"),
        (["--adamw-mode", "closed"], {}, "--adamw-mode 'closed': expected one of free, teacher_forced"),
        (["--adamw-device", "tpu"], {}, "--adamw-device 'tpu': expected one of cpu, cuda"),
        (["--adamw-skips-file", "missing.txt"], {}, "--adamw-skips-file 'missing.txt': "),
        (
            ["--adamw-adapter", "no_such_module:factory"],
            {},
            "adapter 'no_such_module:factory' (from --adamw-adapter) cannot be loaded: AdapterError",
        ),
        (["--adamw-adapter", "nosuch"], {}, "adapter 'nosuch' (from --adamw-adapter) cannot be loaded"),
        ([], {ENV: "nosuch"}, "adapter 'nosuch' (from ADAMW_CONFORMANCE_ADAPTER) cannot be loaded"),
    ],
)
def test_bad_values_are_one_usage_error(
    args: list[str], env: dict[str, str], message: str, elsewhere: Path
) -> None:
    r = _pytest([*PLUGIN, *PYARGS, *args], elsewhere, env)
    assert r.returncode == USAGE_ERROR, _out(r)
    lines = [line for line in _out(r).splitlines() if line.strip()]
    assert len(lines) == 1, _out(r)
    assert lines[0].startswith("ERROR: ") and message in lines[0]
    assert "collected" not in r.stdout  # refused before collection


def test_skips_and_xfails_files(tmp_path: Path, elsewhere: Path) -> None:
    (elsewhere / "planted_mod.py").write_text(
        "from adapters.reference.adapter import planted_adapter\n"
        "def factory():\n    return planted_adapter('decay_scaling', 'unscaled')\n"
    )
    skips = tmp_path / "skips.txt"
    skips.write_text("# adopter-owned\nzero_grad_decay  # known\nno-such-case\n")
    xfails = tmp_path / "xfails.txt"
    xfails.write_text("basic-free  # the planted bug, accepted\n")
    sel = ["--adamw-scenario", "basic", "--adamw-scenario", "zero_grad_decay", "--adamw-dtype", "float64"]
    files = ["--adamw-skips-file", str(skips), "--adamw-xfails-file", str(xfails)]
    r = _pytest([*PLUGIN, *PYARGS, *sel, *files, "-rA"], elsewhere, {ENV: "planted_mod:factory"})
    # basic: free xfails (divergent), teacher_forced fails; zero_grad_decay: both skipped
    assert r.returncode == 1, _out(r)
    assert "1 failed, 2 skipped, 1 xfailed" in r.stdout
    assert "FAILED" in r.stdout and "basic-teacher_forced-s0" in r.stdout
    assert "--adamw-skips-file" in r.stdout and "'no-such-case' matches no test" in r.stdout
    xfails.write_text("basic-  # both basic cases\n")
    r = _pytest([*PLUGIN, *PYARGS, *sel, *files], elsewhere, {ENV: "planted_mod:factory"})
    assert r.returncode == 0, _out(r)
    assert "2 skipped, 2 xfailed" in r.stdout
    xfails.write_text("basic torch=2.0\n")  # a malformed version key
    r = _pytest([*PLUGIN, *PYARGS, *sel, *files], elsewhere, {ENV: "planted_mod:factory"})
    assert r.returncode == USAGE_ERROR and "ERROR: --adamw-xfails-file" in r.stderr, _out(r)


# -- the same cases as ``adamw-conformance run`` ------------------------------------------------


def _cli_ids(adapter: str, selection: list[str], out: Path) -> list[str]:
    cli_main(["run", "--adapter", adapter, *selection, "--out", str(out), "--no-progress", "--no-render"])
    cases = json.loads((out / "report.json").read_text())["cases"]
    assert not [c for c in cases if c["id"].endswith("-process")], cases  # the worker did not fail
    return sorted(c["id"] for c in cases)


SELECTIONS = {
    "default": [],
    "quick": ["--quick"],
    "scenario-dtype": ["--scenario", "basic", "--scenario", "large_eps", "--dtype", "float32"],
    "mode-seeds": ["--mode", "free", "--seeds", "3,1-3"],  # seeds 1, 2, 3: each once
}
COMBINATIONS = [
    *((adapter, sel) for adapter in ("reference", "torch") for sel in SELECTIONS),
    ("torch-adam", "default"),  # DEFAULT_IMPLEMENTATIONS: foreach only
]


@pytest.mark.parametrize(("adapter", "selection"), COMBINATIONS, ids=[f"{a}-{s}" for a, s in COMBINATIONS])
def test_same_cases_as_the_cli(adapter: str, selection: str, elsewhere: Path, tmp_path: Path) -> None:
    if adapter != "reference":
        pytest.importorskip("torch")
    cli_args = SELECTIONS[selection]
    cli = _cli_ids(adapter, cli_args, tmp_path / "cli")
    ours = [a.replace("--", "--adamw-", 1) if a.startswith("--") else a for a in cli_args]
    r = _pytest([*PLUGIN, *PYARGS, "--adamw-adapter", adapter, *ours, "--collect-only", "-q"], elsewhere)
    assert cli
    assert _collected_ids(r) == cli


def test_same_cases_as_the_cli_full(elsewhere: Path, tmp_path: Path) -> None:
    cli = _cli_ids("reference", ["--full", "--seeds", "0-1"], tmp_path / "cli")
    r = _pytest(
        [*PLUGIN, *PYARGS, "--adamw-full", "--adamw-seeds", "0-1", "--collect-only", "-q"],
        elsewhere,
        {ENV: "reference"},
    )
    ids = _collected_ids(r)
    assert ids == cli
    assert {i.rsplit("-", 1)[1] for i in ids} == {"s0", "s1"}
