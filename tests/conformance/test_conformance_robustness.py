"""Robustness of the runner: a crashing, a hanging and an unimportable plug-in adapter each give
``error`` rows (with the stderr tail / the reason) while the reference adapter's cases complete,
and the report on disk is valid JSON conforming to the schema at the end."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from conformance.report import schema as rp
from conformance.runner import Runner

PLUGIN = textwrap.dedent('''
    """Misbehaving adapters for the robustness test."""
    import os
    import sys
    import time

    from adapters.reference.adapter import ReferenceAdapter


    class _Crash(ReferenceAdapter):
        def create(self, config, params, **kw):
            run = super().create(config, params, **kw)
            if self.__dict__.setdefault("_n", 0) >= 1:  # the second case kills the process
                sys.stderr.write("boom: simulated segfault in the framework\\n")
                sys.stderr.flush()
                os._exit(139)
            self._n += 1
            return run


    class _Hang(ReferenceAdapter):
        def create(self, config, params, **kw):
            sys.stderr.write("about to hang\\n")
            sys.stderr.flush()
            time.sleep(3600)


    def crash():
        return _Crash(name="crash")


    def hang():
        return _Hang(name="hang")
''')


@pytest.fixture()
def plugin_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "bad_adapters.py").write_text(PLUGIN)
    (tmp_path / "broken_import.py").write_text("raise ImportError('libcuda.so.1 not found')\n")
    root = str(Path(__file__).resolve().parents[2])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), root, os.environ.get("PYTHONPATH", "")]))
    return tmp_path


def test_crash_hang_and_import_failure_become_error_rows(plugin_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--scenario", "basic", "--scenario", "zero_grad_decay", "--dtype", "float64", "--mode", "free"]
    runner = Runner(
        ["bad_adapters:crash", "bad_adapters:hang", "broken_import:X", "reference"],
        out,
        args,
        jobs=2,
        timeout=8.0,
    )
    report = runner.run()
    on_disk = json.loads((out / "report.json").read_text())
    rp.validate(on_disk)
    assert on_disk == json.loads(json.dumps(report))
    by = {c["id"]: c for c in report["cases"]}

    crash = [c for c in report["cases"] if c["adapter"].endswith("crash")]
    assert [c["verdict"] for c in crash].count("exact") == 1  # the first case completed
    errs = [c for c in crash if c["verdict"] == "error"]
    assert len(errs) == 1 and "boom: simulated segfault" in errs[0]["error"]
    assert "exit status 139" in errs[0]["error"]

    hang = [c for c in report["cases"] if c["adapter"].endswith("hang")]
    assert len(hang) == 2 and all(c["verdict"] == "error" for c in hang)
    assert all("timed out" in c["error"] and "about to hang" in c["error"] for c in hang)

    broken = [c for c in report["cases"] if c["adapter"].startswith("broken_import")]
    assert len(broken) == 1 and broken[0]["verdict"] == "error"
    assert "libcuda.so.1 not found" in broken[0]["error"]

    ref = [c for c in by.values() if c["adapter"] == "reference"]
    assert len(ref) == 2 and all(c["verdict"] == "exact" for c in ref)


def test_worker_writes_lines_incrementally(tmp_path: Path) -> None:
    from conformance.worker import main

    out = tmp_path / "r.jsonl"
    assert (
        main(["--adapter", "reference", "--out", str(out), "--scenario", "basic", "--dtype", "float32"]) == 0
    )
    kinds = [json.loads(line)["type"] for line in out.read_text().splitlines()]
    assert kinds == ["start", "case", "case", "done"]


def test_worker_reports_unloadable_adapter(tmp_path: Path) -> None:
    from conformance.worker import main

    out = tmp_path / "r.jsonl"
    assert main(["--adapter", "no_such_module_xyz:Adapter", "--out", str(out)]) == 2
    msg = json.loads(out.read_text().splitlines()[0])
    assert msg["type"] == "fatal" and "no_such_module_xyz" in msg["error"]
