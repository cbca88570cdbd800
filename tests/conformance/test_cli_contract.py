"""The command line's contract (issue 9): every bad option refused up front in one line with exit
status 2; every accepted option takes effect (one test each, that fails if it is ignored); the
exit status says what the docs say; an interrupted run stops its workers, keeps what finished and
can be resumed; nothing is mixed into an earlier run's directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from conformance.report import schema as rp

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--adapter", "reference", "--scenario", "basic", "--mode", "free", "--dtype", "float64"]

PLUGIN = textwrap.dedent('''
    """Plug-ins for the CLI contract tests."""
    import os
    import time

    from adapters.reference.adapter import ReferenceAdapter, planted_adapter


    def eps_hat():
        """Claims the torch profile, computes eps before bias correction: always divergent."""
        return planted_adapter("eps_placement", "before_bias_correction")


    class _Slow(ReferenceAdapter):
        """The reference, slowly (for interrupting), recording its pid."""

        def create(self, config, params, **kw):
            with open(os.environ["ADAMW_TEST_PIDS"], "a") as fh:
                fh.write(f"{os.getpid()} {time.time()}\\n")
            time.sleep(float(os.environ.get("ADAMW_TEST_SLEEP", "0.6")))
            return super().create(config, params, **kw)


    def slow():
        return _Slow()


    class NumpyAdamW:
        """A plain numpy AdamW (torch semantics) for the numpy: wrapper."""

        def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
            import numpy as np

            self.p = {k: np.array(v) for k, v in params.items()}
            self.lr, (self.b1, self.b2), self.eps, self.wd = lr, betas, eps, weight_decay
            self.m = {k: np.zeros_like(v) for k, v in self.p.items()}
            self.v = {k: np.zeros_like(v) for k, v in self.p.items()}
            self.t = dict.fromkeys(self.p, 0)

        @property
        def params(self):
            return self.p

        def step(self, grads):
            for k, g in grads.items():
                if g is None:
                    continue
                self.t[k] += 1
                t = self.t[k]
                self.p[k] = self.p[k] * (1 - self.lr * self.wd)
                self.m[k] = self.m[k] * self.b1 + g * (1 - self.b1)
                self.v[k] = self.v[k] * self.b2 + g * g * (1 - self.b2)
                denom = (self.v[k] / (1 - self.b2**t)) ** 0.5 + self.eps
                self.p[k] = self.p[k] - self.lr * (self.m[k] / (1 - self.b1**t)) / denom


    def nothing():
        """An adapter whose dtypes match no scenario: it plans zero cases."""
        a = ReferenceAdapter()
        a.info = type(a.info)(**{**a.info.__dict__, "dtypes": ("float8",)})
        return a
''')


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    (tmp_path / "cliplug.py").write_text(PLUGIN)
    return tmp_path


def run(
    cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conformance.cli", *args],
        cwd=cwd,
        text=True,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "80", **(env or {})},
    )


def report(path: Path) -> dict[str, Any]:
    return dict(rp.load(path))


# -- refused up front -----------------------------------------------------------------------
BAD = [
    (["--seeds", "5-2"], "--seeds"),
    (["--seeds", ""], "--seeds"),
    (["--seeds", "-1"], "--seeds"),
    (["--seeds", "a,b"], "--seeds"),
    (["--implementation", "nope"], "--implementation"),
    (["--adapter", "torch", "--implementation", "capturable"], "--implementation"),
    (["--jobs", "0"], "--jobs"),
    (["--jobs", "-5"], "--jobs"),
    (["--jobs", "two"], "--jobs"),
    (["--threads", "0"], "--threads"),
    (["--threads", "1.5"], "--threads"),
    (["--timeout", "nan"], "--timeout"),
    (["--timeout", "0"], "--timeout"),
    (["--timeout", "inf"], "--timeout"),
    (["--scenario", "basci"], "--scenario"),
    (["--adapter", "nope"], "--adapter"),
    (["--adapter", "nopkg.nomod:factory"], "--adapter"),
    (["--adapter", "not a spec:"], "--adapter"),
    (["--xfails-file", "/nonexistent/known.txt"], "--known-findings"),
    (["--known-findings", "/nonexistent/known.txt"], "--known-findings"),
    (["--strict", "--known-findings", "/etc/hostname"], "--known-findings"),
    (["--quick", "--full"], "--quick"),
    (["--no-diagnose", "--diagnose-budget", "5"], "--diagnose-budget"),
    (["--diagnose-budget", "nan"], "--diagnose-budget"),
    (["--closed-loop-steps", "5"], "--closed-loop-steps"),
    (["--closed-loop", "--closed-loop-steps", "0"], "--closed-loop-steps"),
    (["--dtype", "float8"], "--dtype"),
    (["--mode", "sideways"], "--mode"),
    (["--frobnicate"], "unrecognized"),
]


@pytest.mark.parametrize("args,names", BAD, ids=[" ".join(a) or "empty" for a, _ in BAD])
def test_bad_option_is_refused_in_one_line(work: Path, args: list[str], names: str) -> None:
    t0 = time.monotonic()
    res = run(work, "run", "--out", str(work / "out"), *args)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and names in lines[0], res.stderr
    assert "Traceback" not in res.stderr and time.monotonic() - t0 < 5
    assert not (work / "out" / "report.json").exists()  # nothing ran


@pytest.mark.parametrize("out", ["file", "under_file", "unwritable"])
def test_bad_out_is_refused(work: Path, out: str) -> None:
    (work / "f").write_text("x")
    ro = work / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    target = {"file": work / "f", "under_file": work / "f" / "x", "unwritable": ro / "x"}[out]
    if out == "unwritable" and os.access(ro, os.W_OK):
        pytest.skip("running as a user who can write anywhere (root)")
    res = run(work, "run", *SMALL, "--out", str(target))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "--out" in res.stderr


def test_device_cuda_without_a_gpu_is_refused(work: Path) -> None:
    from conformance.options import cuda_visible

    if cuda_visible()[0]:
        pytest.skip("a GPU is visible here")
    res = run(work, "run", *SMALL, "--device", "cuda", "--out", str(work / "o"))
    assert res.returncode == 2 and "--device 'cuda': no CUDA device visible" in res.stderr


def test_earlier_run_is_refused_without_force(work: Path) -> None:
    out = work / "o"
    assert run(work, "run", *SMALL, "--out", str(out)).returncode == 0
    res = run(work, "run", *SMALL, "--out", str(out))
    assert res.returncode == 2 and "--force" in res.stderr


# -- every option takes effect --------------------------------------------------------------
def _ids(path: Path) -> list[str]:
    return [c["id"] for c in report(path)["cases"]]


def test_selection_options_take_effect(work: Path) -> None:
    out = work / "o"
    res = run(
        work,
        "run",
        "--adapter",
        "reference",
        "--adapter",
        "reference",
        "--scenario",
        "basic",
        "--scenario",
        "zero_grad_decay",
        "--dtype",
        "float32",
        "--mode",
        "teacher_forced",
        "--seeds",
        "1,3-4",
        "--out",
        str(out),
    )
    assert res.returncode == 0, res.stderr
    cases = report(out)["cases"]
    assert {c["adapter"] for c in cases} == {"reference"}
    assert {c["scenario"] for c in cases} == {"basic", "zero_grad_decay"}
    assert {c["dtype"] for c in cases} == {"float32"}
    assert {c["mode"] for c in cases} == {"teacher_forced"}
    assert sorted({c["seed"] for c in cases}) == [1, 3, 4]
    assert len(cases) == len({c["id"] for c in cases}) == 6  # the duplicate adapter ran once


def test_implementation_takes_effect(work: Path) -> None:
    pytest.importorskip("torch")
    out = work / "o"
    res = run(
        work,
        "run",
        "--adapter",
        "torch",
        "--implementation",
        "fused",
        "--scenario",
        "basic",
        "--dtype",
        "float32",
        "--mode",
        "free",
        "--out",
        str(out),
        "--no-render",
    )
    assert res.returncode == 0, res.stderr
    assert {c["implementation"] for c in report(out)["cases"]} == {"fused"}


def test_quick_and_full_take_effect(work: Path) -> None:
    from conformance.scenarios import select

    quick = work / "q"
    assert (
        run(
            work,
            "run",
            "--adapter",
            "reference",
            "--quick",
            "--mode",
            "free",
            "--dtype",
            "float64",
            "--out",
            str(quick),
            "--no-render",
        ).returncode
        == 0
    )
    assert {c["scenario"] for c in report(quick)["cases"]} == {
        s.id for s in select(quick=True) if "float64" in s.dtypes
    }
    full = work / "f"
    assert (
        run(
            work,
            "run",
            "--adapter",
            "reference",
            "--full",
            "--scenario",
            "basic",
            "--mode",
            "free",
            "--dtype",
            "float64",
            "--out",
            str(full),
            "--no-render",
        ).returncode
        == 0
    )
    assert sorted(c["seed"] for c in report(full)["cases"]) == [0, 1, 2, 3, 4]  # --full: 5 seeds


def test_diagnosis_options_take_effect(work: Path) -> None:
    args = [
        "--adapter",
        "cliplug:eps_hat",
        "--scenario",
        "basic",
        "--mode",
        "free",
        "--dtype",
        "float64",
        "--strict",
        "--no-render",
    ]
    full = run(work, "run", *args, "--out", str(work / "a"))
    assert full.returncode == 1
    (case,) = report(work / "a")["cases"]
    assert case["verdict"] == "divergent" and case["diagnosis"]["explained_by"]
    none = run(work, "run", *args, "--no-diagnose", "--out", str(work / "b"))
    assert report(work / "b")["cases"][0]["diagnosis"] is None, none.stderr
    zero = run(work, "run", *args, "--diagnose-budget", "0", "--out", str(work / "c"))
    assert "budget" in report(work / "c")["cases"][0]["diagnosis"]["detail"], zero.stderr


def test_known_findings_options_take_effect(work: Path) -> None:
    args = [
        "--adapter",
        "cliplug:eps_hat",
        "--scenario",
        "basic",
        "--mode",
        "free",
        "--dtype",
        "float64",
        "--no-render",
    ]
    known = work / "known.txt"
    known.write_text("# the planted bug\ncliplug:eps_hat[emulated]-cpu-float64-basic-\n")
    accepted = run(work, "run", *args, "--known-findings", str(known), "--out", str(work / "a"))
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert report(work / "a")["cases"][0]["expected"].startswith("cliplug:eps_hat")
    alias = run(work, "run", *args, "--xfails-file", str(known), "--out", str(work / "b"))
    assert alias.returncode == 0
    strict = run(work, "run", *args, "--strict", "--out", str(work / "c"))
    assert strict.returncode == 1 and not report(work / "c")["cases"][0].get("expected")
    other = work / "other.txt"
    other.write_text("cliplug:eps_hat[emulated]-cpu-float64-basic-  numpy==0.0.1\n")
    moved = run(work, "run", *args, "--known-findings", str(other), "--out", str(work / "d"))
    assert moved.returncode == 1 and "does not apply here" in moved.stderr  # another version


def test_output_options_take_effect(work: Path) -> None:
    out = work / "o"
    stale = out / "scenario-old.png"
    assert run(work, "run", *SMALL, "--out", str(out), "--no-render").returncode == 0
    assert not (out / "report.html").exists()  # --no-render
    stale.write_bytes(b"old plot")
    (out / "mine.txt").write_text("not the suite's")
    res = run(work, "run", *SMALL, "--out", str(out), "--force", "--verbose")
    assert res.returncode == 0 and not stale.exists() and (out / "mine.txt").exists()
    assert "every case" in res.stdout  # --verbose: the full case table
    assert (out / "report.html").exists()
    assert oct((out / "report.json").stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_progress_lines_in_a_pipe(work: Path) -> None:
    shown = run(work, "run", *SMALL, "--out", str(work / "a"), "--no-render")
    assert "[1/1] reference:" in shown.stderr
    hidden = run(work, "run", *SMALL, "--out", str(work / "b"), "--no-render", "--no-progress")
    assert "[1/1]" not in hidden.stderr


def test_timeout_takes_effect(work: Path) -> None:
    res = run(
        work,
        "run",
        "--adapter",
        "cliplug:slow",
        "--scenario",
        "basic",
        "--dtype",
        "float64",
        "--timeout",
        "2",
        "--out",
        str(work / "o"),
        "--no-render",
        env={"ADAMW_TEST_PIDS": str(work / "pids"), "ADAMW_TEST_SLEEP": "30"},
    )
    assert res.returncode == 1
    errors = [c for c in report(work / "o")["cases"] if c["verdict"] == "error"]
    assert errors and "timed out after 2 s" in errors[0]["error"]


def test_jobs_takes_effect(work: Path) -> None:
    # two workers with different specs: the same module under two names
    (work / "cliplug2.py").write_text("from cliplug import slow\n")
    for jobs, overlap in (("1", False), ("2", True)):
        pids = work / f"pids{jobs}"
        res = run(
            work,
            "run",
            "--adapter",
            "cliplug:slow",
            "--adapter",
            "cliplug2:slow",
            "--scenario",
            "basic",
            "--dtype",
            "float64",
            "--mode",
            "free",
            "--jobs",
            jobs,
            "--out",
            str(work / f"j{jobs}"),
            "--no-render",
            env={"ADAMW_TEST_SLEEP": "2.0", "ADAMW_TEST_PIDS": str(pids)},
        )
        assert res.returncode == 0, res.stderr
        starts = sorted(float(ln.split()[1]) for ln in pids.read_text().splitlines())
        assert len(starts) == 2
        # one at a time: the second worker starts after the first slept its 2 s
        assert (starts[1] - starts[0] < 1.5) == overlap, (jobs, starts)


def test_closed_loop_options_take_effect(work: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    out = work / "o"
    res = run(
        work,
        "run",
        "--adapter",
        "torch",
        "--scenario",
        "basic",
        "--dtype",
        "float64",
        "--mode",
        "free",
        "--implementation",
        "foreach",
        "--closed-loop",
        "--closed-loop-steps",
        "7",
        "--out",
        str(out),
        "--no-render",
    )
    assert res.returncode == 0, res.stdout + res.stderr
    loops = [c for c in report(out)["cases"] if c["mode"] == "closed_loop"]
    assert loops and {c["steps"] for c in loops if c["verdict"] != "skipped"} == {7}


# -- exit status ----------------------------------------------------------------------------
def test_a_run_that_checks_nothing_fails(work: Path) -> None:
    res = run(work, "run", "--adapter", "cliplug:nothing", "--out", str(work / "o"))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "nothing was checked" in res.stdout


def test_summary_in_a_pipe_is_short_and_ends_with_the_totals(work: Path) -> None:
    res = run(
        work,
        "run",
        "--adapter",
        "reference",
        "--adapter",
        "cliplug:eps_hat",
        "--quick",
        "--strict",
        "--out",
        str(work / "o"),
    )
    assert res.returncode == 1
    lines = res.stdout.rstrip().splitlines()
    assert max(len(ln) for ln in lines) <= 80 and len(lines) < 150
    text = " ".join(lines[-4:])
    assert "Exit status 1" in text and "unexpected divergence" in text


# -- interruption and resume ----------------------------------------------------------------
def _alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except OSError:
            state = "?"
        if state != "Z":
            out.append(pid)
    return out


def _start(work: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "COLUMNS": "80", "ADAMW_TEST_PIDS": str(work / "pids"), "ADAMW_TEST_SLEEP": "0.5"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conformance.cli",
            "run",
            "--adapter",
            "cliplug:slow",
            "--scenario",
            "basic",
            "--scenario",
            "zero_grad_decay",
            "--scenario",
            "sign_flip",
            "--out",
            str(out),
            "--no-render",
            *extra,
        ],
        cwd=work,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_cases(out: Path, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if len(json.loads((out / "report.json").read_text())["cases"]) >= n:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"fewer than {n} cases after {timeout} s")


def _worker_pids(work: Path) -> list[int]:
    return sorted({int(ln.split()[0]) for ln in (work / "pids").read_text().splitlines()})


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_keeps_finished_cases_and_stops_workers(work: Path, sig: int, code: int) -> None:
    out = work / "o"
    proc = _start(work, out)
    _wait_cases(out, 2)
    proc.send_signal(sig)
    _stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr and "--resume" in stderr
    rep = report(out)
    assert rep["envelope"]["status"] == "interrupted" and len(rep["cases"]) >= 2
    assert all(c["verdict"] != "error" for c in rep["cases"])  # nothing invented
    time.sleep(0.5)
    assert _alive(_worker_pids(work)) == []
    # resume finishes it, without redoing a finished case
    done = {c["id"] for c in rep["cases"]}
    before = len((work / "pids").read_text().splitlines())
    res = run(
        work,
        "run",
        "--resume",
        str(out),
        "--no-render",
        env={"ADAMW_TEST_PIDS": str(work / "pids"), "ADAMW_TEST_SLEEP": "0"},
    )
    assert res.returncode == 0, res.stderr
    final = report(out)
    ids = [c["id"] for c in final["cases"]]
    assert final["envelope"]["status"] == "complete" and len(ids) == len(set(ids))
    assert done < set(ids) and len(ids) == final["envelope"]["planned"]
    created = len((work / "pids").read_text().splitlines()) - before
    assert created == len(ids) - len(done)  # only the unfinished cases ran again


def test_workers_die_with_a_killed_runner(work: Path) -> None:
    out = work / "o"
    proc = _start(work, out)
    _wait_cases(out, 1)
    proc.kill()  # SIGKILL: the runner cannot clean up
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while _alive(_worker_pids(work)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _alive(_worker_pids(work)) == []


def test_resume_refuses_other_options(work: Path) -> None:
    res = run(work, "run", "--resume", str(work), "--seeds", "3")
    assert res.returncode == 2 and "--resume" in res.stderr


# -- faithful numbers -----------------------------------------------------------------------
def test_nonfinite_numbers_round_trip(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    case = {
        "metrics": {"w": {"max_abs": float("nan"), "max_rel": float("inf"), "max_ulp": 3.0}},
        "first_divergence": {
            "expected": 1.0,
            "got": float("nan"),
            "abs_err": float("nan"),
            "ulp": float("-inf"),
            "step": 1,
            "param": "w",
            "index": [],
        },
        "series": {"step": [1, 2], "err": [0.5, float("inf")]},
        "bound": {"max_ratio": float("inf")},
        "diagnosis": {
            "explained_by": None,
            "kind": None,
            "detail": "",
            "candidates": [{"name": "x", "score": float("nan")}],
        },
    }
    doc = {"schema": rp.SCHEMA, "schema_version": rp.SCHEMA_VERSION, "envelope": {}, "cases": [case]}
    rp.write_atomic(tmp_path / "report.json", doc)
    raw = json.loads((tmp_path / "report.json").read_text())  # strict JSON: no NaN literals
    assert raw["cases"][0]["metrics"]["w"]["max_abs"] == "nan"
    schema = json.loads(rp.schema_path().read_text())
    jsonschema.validate(raw["cases"][0]["metrics"]["w"], {**schema, **schema["$defs"]["metrics"]})
    back = rp.load(tmp_path)["cases"][0]
    assert repr(back["metrics"]["w"]["max_abs"]) == "nan" and back["metrics"]["w"]["max_rel"] == float("inf")
    assert repr(back["first_divergence"]["got"]) == "nan" and back["first_divergence"]["ulp"] == float("-inf")
    assert back["series"]["err"][1] == float("inf") and back["bound"]["max_ratio"] == float("inf")


def test_version_1_0_reports_are_still_read(tmp_path: Path) -> None:
    old = {
        "schema": rp.SCHEMA,
        "schema_version": "1.0",
        "envelope": {},
        "cases": [{"metrics": {"w": {"max_abs": 1.7976931348623157e308, "max_rel": 0.5, "max_ulp": 1.0}}}],
    }
    (tmp_path / "report.json").write_text(json.dumps(old))
    assert rp.load(tmp_path)["cases"][0]["metrics"]["w"]["max_abs"] == float("inf")


def test_a_repro_command_runs_as_printed(work: Path) -> None:
    out = work / "o"
    res = run(
        work,
        "run",
        "--adapter",
        "cliplug:eps_hat",
        "--scenario",
        "basic",
        "--mode",
        "free",
        "--dtype",
        "float64",
        "--strict",
        "--out",
        str(out),
        "--no-render",
    )
    assert res.returncode == 1
    (case,) = report(out)["cases"]
    repro = case["repro"]
    assert "--save-traj" not in repro and "cliplug:eps_hat" in repro
    again = subprocess.run(
        repro.replace("adamw-conformance", f"{sys.executable} -m conformance.cli", 1)
        + " --strict --no-render",
        shell=True,
        cwd=work,
        text=True,
        capture_output=True,
        timeout=240,
    )
    assert again.returncode == 1, again.stderr
    (twin,) = report(work / repro.split("--out ")[1].split()[0])["cases"]
    assert twin["id"] == case["id"] and twin["verdict"] == "divergent"


def test_every_option_has_help_and_there_is_a_version(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from conformance import __version__
    from conformance.cli import build_parser, main

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subs.choices.items():
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"adamw-conformance {name} {action.option_strings[0]} has no help"
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"adamw-conformance {__version__}"


def test_a_wrapper_spec_runs_with_no_adapter_code(work: Path) -> None:
    out = work / "o"
    res = run(
        work,
        "run",
        "--adapter",
        "numpy:cliplug.NumpyAdamW",
        "--scenario",
        "basic",
        "--scenario",
        "frozen",
        "--mode",
        "free",
        "--dtype",
        "float64",
        "--out",
        str(out),
        "--no-render",
    )
    assert res.returncode == 0, res.stdout + res.stderr
    cases = report(out)["cases"]
    assert cases and all(c["verdict"] in ("exact", "within_bound") for c in cases)
    assert all(c["adapter"] == "numpy:cliplug.NumpyAdamW" for c in cases)


def test_adapter_arg_takes_effect(work: Path) -> None:
    # eps=0.5 pinned by --adapter-arg: every case whose config wants another eps is refused
    out = work / "o"
    res = run(
        work,
        "run",
        "--adapter",
        "numpy:cliplug.NumpyAdamW",
        "--adapter-arg",
        "eps=0.5",
        "--scenario",
        "basic",
        "--mode",
        "free",
        "--dtype",
        "float64",
        "--out",
        str(out),
        "--no-render",
    )
    (case,) = report(out)["cases"]
    assert case["adapter"] == "numpy:cliplug.NumpyAdamW?eps=0.5", res.stderr
    assert case["verdict"] == "skipped" and "eps" in case["error"]


@pytest.mark.parametrize(
    "args,names",
    [
        (["--adapter-arg", "eps=0.5"], "--adapter-arg"),
        (["--adapter", "reference", "--adapter-arg", "eps=0.5"], "--adapter-arg"),
        (["--adapter", "numpy:cliplug.NumpyAdamW", "--adapter-arg", "not an arg"], "--adapter-arg"),
        (["--adapter", "torch:nosuchpkg.Opt"], "--adapter"),
        (["--adapter", "sideways:pkg.Opt"], "--adapter"),
    ],
)
def test_bad_wrapper_options_are_refused(work: Path, args: list[str], names: str) -> None:
    res = run(work, "run", "--out", str(work / "o"), *args)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and names in res.stderr, res.stderr
