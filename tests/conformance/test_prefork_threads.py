"""Workers forked from the torch fork server, and the thread count of every worker.

A forked worker must behave as a spawned one: the same cases and results, its own stderr, exit
status, timeout and kill, a plug-in importable from the working directory or ``PYTHONPATH``,
and no process left behind; ``--threads`` must reach the frameworks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conformance import prefork
from conformance.report import schema as rp
from conformance.runner import Runner
from conformance.threads import XLA_ONE_THREAD, per_worker, thread_env

ROOT = Path(__file__).resolve().parents[2]
CLI = (sys.executable, "-m", "conformance.cli")
torch_only = pytest.mark.skipif(
    not prefork.wanted("torch") or __import__("importlib").util.find_spec("torch") is None,
    reason="the fork server is for torch workers on Linux",
)


def test_threads_per_worker_divides_the_cores() -> None:
    assert per_worker(2, ncores=2) == 1
    assert per_worker(1, ncores=2) == 2
    assert per_worker(3, ncores=16) == 5
    assert per_worker(8, ncores=2) == 1  # never 0


def test_thread_env_keeps_the_users_choice_unless_forced() -> None:
    env = thread_env(1, {"OMP_NUM_THREADS": "4"})
    assert "OMP_NUM_THREADS" not in env and env["MKL_NUM_THREADS"] == "1"
    assert env["TF_NUM_INTRAOP_THREADS"] == env["TF_NUM_INTEROP_THREADS"] == "1"
    assert thread_env(1, {"OMP_NUM_THREADS": "4"}, force=True)["OMP_NUM_THREADS"] == "1"
    assert env["XLA_FLAGS"] == XLA_ONE_THREAD
    assert thread_env(1, {"XLA_FLAGS": "--xla_dump_to=/tmp/x"})["XLA_FLAGS"].startswith("--xla_dump_to")
    assert "XLA_FLAGS" not in thread_env(1, {"XLA_FLAGS": XLA_ONE_THREAD})  # not twice
    assert "XLA_FLAGS" not in thread_env(2, {})  # XLA sizes its own pool above one thread
    with pytest.raises(ValueError, match="threads=0"):
        thread_env(0, {})


def test_only_torch_workers_fork() -> None:
    linux = sys.platform.startswith("linux")
    for spec in ("torch", "torch-adam", "keras-torch", "torch:mypkg.MyAdamW"):
        assert prefork.wanted(spec, {}) is linux
    for spec in ("keras-tensorflow", "optax", "mlx", "reference", "numpy:mypkg.X", "mypkg:factory"):
        assert not prefork.wanted(spec, {})
    assert not prefork.wanted("torch", {prefork.DISABLE_ENV: "1"})
    assert not prefork.wanted("torch", {}, device="cuda")  # never fork after CUDA may be set up


def _run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> dict:  # type: ignore[type-arg]
    out = tmp_path / "out"
    proc = subprocess.run(
        [*CLI, "run", "--out", str(out), "--no-progress", "--no-render", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return rp.load(out)  # type: ignore[return-value]


@torch_only
@pytest.mark.parametrize("threads", ["1", "2"])
def test_threads_option_reaches_torch_in_a_forked_worker(tmp_path: Path, threads: str) -> None:
    sel = ["--adapter", "torch", "--implementation", "foreach", "--scenario", "basic", "--dtype", "float32"]
    report = _run(tmp_path, *sel, "--mode", "free", "--threads", threads)
    seen = report["envelope"]["precision"]["threads"]
    assert seen["torch"] == int(threads) and seen["OMP_NUM_THREADS"] == threads


@torch_only
def test_forked_and_spawned_workers_give_the_same_cases(tmp_path: Path) -> None:
    sel = ["--adapter", "torch", "--adapter", "torch-adam", "--scenario", "basic", "--dtype", "float64"]
    forked = _run(tmp_path / "fork", *sel)
    spawned = _run(tmp_path / "spawn", *sel, env={prefork.DISABLE_ENV: "1"})

    def key(r: dict) -> dict:  # type: ignore[type-arg]
        return {c["id"]: (c["verdict"], c["metrics"], c["series"]) for c in r["cases"]}

    assert key(forked) and key(forked) == key(spawned)


PLUGIN = """
import os, sys, time
from adapters.reference.adapter import ReferenceAdapter


class Crash(ReferenceAdapter):
    def create(self, config, params, **kw):
        sys.stderr.write("boom from a forked worker\\n")
        sys.stderr.flush()
        os._exit(139)


class Hang(ReferenceAdapter):
    def create(self, config, params, **kw):
        sys.stderr.write("forked and hanging\\n")
        sys.stderr.flush()
        time.sleep(3600)


def crash():
    return Crash(name="crash")


def hang():
    return Hang(name="hang")
"""


@torch_only
def test_a_forked_worker_crashes_and_hangs_like_a_spawned_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "forked_bad.py").write_text(PLUGIN)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(plugins), str(ROOT)]))
    monkeypatch.setattr(prefork, "wanted", lambda spec, environ=None, device="cpu": True)  # all fork
    args = ["--scenario", "basic", "--dtype", "float64", "--mode", "free"]
    runner = Runner(["forked_bad:crash", "forked_bad:hang", "reference"], tmp_path / "out", args, timeout=6.0)
    jobs = list(runner.pending)
    t0 = time.monotonic()
    report = runner.run()
    assert time.monotonic() - t0 < 60
    by = {c["adapter"]: c for c in report["cases"]}
    assert by["forked_bad:crash"]["verdict"] == "error"
    crash = str(by["forked_bad:crash"]["error"])
    assert "boom from a forked worker" in crash and "exit status 139" in crash
    assert by["forked_bad:hang"]["verdict"] == "error"
    hang = str(by["forked_bad:hang"]["error"])
    assert "timed out" in hang and "forked and hanging" in hang
    assert by["reference"]["verdict"] == "exact"
    assert all(isinstance(j.proc, prefork.ForkedWorker) for j in jobs)
    for job in jobs:  # every forked worker is gone
        assert job.proc is not None and job.proc.pid
        with pytest.raises(ProcessLookupError):
            os.kill(job.proc.pid, 0)


@torch_only
def test_forked_workers_die_with_the_runner(tmp_path: Path) -> None:
    """SIGKILL of the CLI (no clean-up at all): the fork server and its workers still exit."""
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [*CLI, "run", "--adapter", "torch", "--out", str(out), "--no-progress"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pids: list[int] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not pids:
        time.sleep(0.2)
        pids = _workers_of(out / "raw" / "torch.jsonl")
    assert pids, "the torch worker never started"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids)


def _workers_of(results: Path) -> list[int]:
    """Pids of processes whose open files include ``results`` (the worker writing it)."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if any(os.readlink(f) == str(results) for f in (d / "fd").iterdir()):
                found.append(int(d.name))
        except OSError:
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_report_header_records_threads(tmp_path: Path) -> None:
    report = _run(tmp_path, "--adapter", "reference", "--scenario", "basic", "--threads", "3")
    assert report["envelope"]["precision"]["threads"]["OMP_NUM_THREADS"] == "3"
    assert json.dumps(report["envelope"]["precision"])  # serialisable as written


def test_the_header_states_the_matmul_precision_of_a_jax_worker(tmp_path: Path) -> None:
    """The worker imports the adapter's frameworks before it sets their precision: Optax imports
    JAX lazily, at the first case, which the setting and the header used to miss."""
    pytest.importorskip("optax")
    sel = ["--adapter", "optax", "--scenario", "basic", "--dtype", "float32", "--mode", "free"]
    report = _run(tmp_path, *sel)
    assert report["envelope"]["precision"]["matmul"]["jax_default_matmul_precision"] == "highest"


def test_a_worker_ends_with_its_atexit_handlers_and_status() -> None:
    code = (
        "import atexit; from conformance.worker import exit_now; "
        "atexit.register(lambda: print('handler ran', flush=True)); exit_now(3)"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 3 and "handler ran" in res.stdout, res
