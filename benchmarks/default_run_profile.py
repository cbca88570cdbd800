"""Where the time of a conformance run goes: every process of one run, timed by phase.

Runs ``adamw-conformance run [--quick] --out DIR`` once with a ``sitecustomize`` on PYTHONPATH
that, in every Python process of the run (the CLI and each adapter's worker), wraps the
functions that begin each phase and charges the wall time of the main thread to the innermost
phase it is in (a stack of phases; no profiler, so no slow-down):

* ``imports``: inside ``import`` (framework imports included, wherever they happen);
* ``jit_compile``: JAX lowering and XLA compilation (``pxla.lower_sharding_computation``,
  ``compiler.compile_or_get_cached``), ``tf.function`` tracing, numba compilation;
* ``implementation``: the implementation's own run (``execute._run_free``, ``_run_forced``):
  creating the optimizer and stepping it, less the two above;
* ``reference``: the reference trajectories (``diagnose.reference_points``, the oracle's
  ``RefStepper.step``);
* ``comparison``: bounds and metrics (``tolerance.step_bounds``, ``compare.compare``);
* ``diagnosis``: the knob search of divergent cases (``Executor._explain``: everything inside
  it but imports and compilation counts here);
* ``case_other``: the rest of a case (scenario inputs, configuration);
* ``rendering`` (the CLI process): terminal summary, PNG plots, HTML (``cli._render``);
* ``other``: outside every phase (start-up, planning, JSON lines; in the CLI, waiting for
  the workers).

``timeline_s`` records when each process started and ended (seconds from the CLI's start); a
worker forked from the fork server (:mod:`conformance.prefork`) starts its account at the fork.

Writes ``benchmarks/results/default_run_profile.json``::

    .venv/bin/python benchmarks/default_run_profile.py [--tier quick|default] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SITECUSTOMIZE = r"""
import atexit, json, os, sys, threading, time

_dir = os.environ.get("ADAMW_PROFILE_DIR")
if _dir:
    import importlib._bootstrap as _boot

    _acc = {}
    _stack = []  # [phase, since]
    _t0, _e0 = time.perf_counter(), time.time()
    _STICKY = ("diagnosis", "rendering")  # what runs inside them is theirs
    _OVERRIDE = ("imports", "jit_compile")  # ... except these

    def _enter(phase):
        now = time.perf_counter()
        if _stack:
            top = _stack[-1]
            _acc[top[0]] = _acc.get(top[0], 0.0) + now - top[1]
            if top[0] in _STICKY and phase not in _OVERRIDE:
                phase = top[0]
        _stack.append([phase, now])

    def _leave():
        now = time.perf_counter()
        phase, since = _stack.pop()
        _acc[phase] = _acc.get(phase, 0.0) + now - since
        if _stack:
            _stack[-1][1] = now

    def _wrap(fn, phase):
        def wrapper(*a, **k):
            if threading.current_thread() is not threading.main_thread():
                return fn(*a, **k)
            _enter(phase)
            try:
                return fn(*a, **k)
            finally:
                _leave()

        wrapper.__wrapped__ = fn
        return wrapper

    # module -> [(attribute path, phase)]
    _PATCH = {
        "conformance.execute": [
            ("Executor._run", "case_other"),
            ("_run_free", "implementation"),
            ("_run_forced", "implementation"),
            ("Executor._explain", "diagnosis"),
        ],
        "conformance.diagnose": [("reference_points", "reference")],
        "adapters.reference.oracle": [("RefStepper.step", "reference")],
        "conformance.tolerance": [("step_bounds", "comparison")],
        "conformance.compare": [("compare", "comparison")],
        "conformance.cli": [("_render", "rendering")],
        "jax._src.interpreters.pxla": [("lower_sharding_computation", "jit_compile")],
        "jax._src.compiler": [("compile_or_get_cached", "jit_compile")],
        "tensorflow.python.eager.polymorphic_function.tracing_compilation": [
            ("_create_concrete_function", "jit_compile")
        ],
        "numba.core.dispatcher": [("Dispatcher._compile_for_args", "jit_compile")],
    }

    def _patch(name):
        mod = sys.modules.get(name)
        for path, phase in _PATCH.pop(name, ()):
            owner = mod
            *parents, attr = path.split(".")
            for p in parents:
                owner = getattr(owner, p, None)
            fn = getattr(owner, attr, None) if owner is not None else None
            if fn is not None:
                setattr(owner, attr, _wrap(fn, phase))

    _find_and_load = _boot._find_and_load

    def _traced_find_and_load(name, import_):
        if threading.current_thread() is not threading.main_thread():
            return _find_and_load(name, import_)
        _enter("imports")
        try:
            return _find_and_load(name, import_)
        finally:
            _leave()
            if name in _PATCH:
                _patch(name)

    _boot._find_and_load = _traced_find_and_load

    def _dump():
        while _stack:
            _leave()
        wall = time.perf_counter() - _t0
        argv = sys.argv
        name = "cli"
        if argv == ["-c"]:  # multiprocessing's helpers (the CLI has its arguments)
            server = "multiprocessing.forkserver" in sys.modules
            name = "forkserver" if server else "resource_tracker"
        for i, a in enumerate(argv):
            if a == "--name" and i + 1 < len(argv):
                name = "worker-" + argv[i + 1]
        acc = dict(_acc)
        acc["other"] = max(0.0, wall - sum(acc.values()))
        acc["total"] = wall
        acc["start_epoch"], acc["end_epoch"] = _e0, time.time()
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        with open(os.path.join(_dir, f"{safe}.{os.getpid()}.json"), "w") as fh:
            json.dump({k: round(v, 3) for k, v in acc.items()}, fh)

    def _reset():  # a worker forked from the fork server starts its own account
        global _t0, _e0
        _acc.clear()
        del _stack[:]
        _t0, _e0 = time.perf_counter(), time.time()

    os.register_at_fork(after_in_child=_reset)
    atexit.register(_dump)
"""

PHASES = [
    "imports",
    "jit_compile",
    "implementation",
    "reference",
    "comparison",
    "diagnosis",
    "case_other",
    "rendering",
    "other",
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tier", default="default", choices=["quick", "default"])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "default_run_profile.json"))
    ns = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        site, profs, report = Path(tmp) / "site", Path(tmp) / "profs", Path(tmp) / "report"
        site.mkdir()
        profs.mkdir()
        (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        )
        env["ADAMW_PROFILE_DIR"] = str(profs)
        # imported, not run as __main__, so that its _render can be wrapped
        launch = "import sys; from conformance.cli import main; sys.exit(main(sys.argv[1:]))"
        cmd = [sys.executable, "-c", launch, "run", "--out", str(report), "--no-progress"]
        if ns.tier == "quick":
            cmd.append("--quick")
        load0 = os.getloadavg()
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        if proc.returncode not in (0, 1):
            raise SystemExit(f"run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        processes = {p.name.split(".")[0]: json.loads(p.read_text()) for p in sorted(profs.glob("*.json"))}
    t_cli = processes.get("cli", {}).get("start_epoch", 0.0)
    timeline = {
        k: [round(v.pop("start_epoch", 0.0) - t_cli, 2), round(v.pop("end_epoch", 0.0) - t_cli, 2)]
        for k, v in processes.items()
    }
    workers = {k: v for k, v in processes.items() if k.startswith("worker")}
    sums = {k: round(sum(v.get(k, 0.0) for v in workers.values()), 2) for k in [*PHASES, "total"]}
    total = sums["total"] or 1.0
    result = {
        "benchmark": "default_run_profile",
        "what": "wall seconds of each phase in every process of one conformance run (the main "
        "thread's time charged to the innermost phase; workers run --jobs 2 at a time, so their "
        "sum exceeds the run's wall time)",
        "command": f"python benchmarks/default_run_profile.py --tier {ns.tier}",
        "oracle_backend": os.environ.get("ADAMW_REF_ORACLE", "auto"),
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "load_average_start": [round(x, 2) for x in load0],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "run_wall_s": round(wall, 2),
        "workers_summed_s": sums,
        "workers_share": {k: round(sums[k] / total, 3) for k in PHASES},
        "cli": processes.get("cli", {}),
        "processes": processes,
        "timeline_s": dict(sorted(timeline.items(), key=lambda kv: kv[1][0])),
    }
    Path(ns.out).write_text(json.dumps(result, indent=2) + "\n")
    shown = ("run_wall_s", "workers_summed_s", "cli", "timeline_s")
    print(json.dumps({k: result[k] for k in shown}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
