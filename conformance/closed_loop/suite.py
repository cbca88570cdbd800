"""Closed-loop conformance: train a real task in a framework and in the reference, compare.

``run_closed_loop(framework, task, steps, dtype, seed)`` trains the task (see
:mod:`conformance.closed_loop.data`) with the framework's autodiff and native AdamW, and with
NumPy gradients + :func:`adamw_ref.step` under the framework's profile, both fed the *same*
hyperparameters ``HYPER`` (lr=1e-3, weight_decay=1e-2, eps=1e-8, betas 0.9/0.999, passed as-is).
Each side runs its own loop, so rounding differences feed back through the weights.
``closed_loop_cases(results)`` turns run records into report cases (mode ``closed_loop``):

* ``<task>`` scenario: framework vs reference with the matching profile; bound from
  :mod:`conformance.closed_loop.bound`.
* ``<task>_naive_port`` scenario: framework vs the torch run with the same hyperparameters,
  i.e. what a naive port of a PyTorch recipe gets; a difference explained by the profiles is
  ``acceptable`` (flag ``naive_port``) and diagnosed knob by knob with reference runs.

CLI (one framework per process)::

    python -m conformance.closed_loop.suite --framework torch --task logreg --steps 200 --out r.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conformance.closed_loop.compare import compare_to_reference, naive_port_case

FRAMEWORKS = ("torch", "keras-tensorflow", "keras-jax", "keras-torch", "optax", "mlx")
TASKS = ("logreg", "mlp")
#: ``--full`` adds a model of realistic width (64-512-512-10), where the frameworks' matrix
#: products and vectorised optimizer kernels take their blocked and threaded paths.
FULL_TASKS = (*TASKS, "mlp_wide")
HYPER: dict[str, float] = {"lr": 1e-3, "weight_decay": 1e-2, "eps": 1e-8, "beta1": 0.9, "beta2": 0.999}
PROFILE_FOR = {
    "torch": "torch",
    "keras-tensorflow": "keras3",
    "keras-jax": "keras3",
    "keras-torch": "keras3",
    "optax": "optax",
    "mlx": "mlx",
}
RUN_SCHEMA = "adamw-conformance/closed-loop-run"


def _set_keras_backend(framework: str) -> None:
    backend = framework.split("-", 1)[1]
    current = os.environ.get("KERAS_BACKEND")
    if "keras" in sys.modules and current not in (None, backend):
        raise RuntimeError(
            f"framework={framework!r}: keras is already imported with backend "
            f"{current!r}; run each Keras backend in its own process"
        )
    os.environ["KERAS_BACKEND"] = backend


def run_closed_loop(
    framework: str, task: str, steps: int = 200, dtype: str = "float64", seed: int = 0, batch_size: int = 64
) -> dict[str, Any]:
    """Train ``task`` in ``framework`` and in the reference (matching profile); the run record.

    ``framework`` is one of :data:`FRAMEWORKS` (``keras-<backend>`` sets ``KERAS_BACKEND``,
    which must happen before Keras is first imported in this process).
    """
    if framework not in FRAMEWORKS:
        raise ValueError(f"framework={framework!r}: expected one of {list(FRAMEWORKS)}")
    from conformance.closed_loop.data import load_task
    from conformance.closed_loop.frameworks import RUNNERS
    from conformance.closed_loop.reference import run_reference

    data = load_task(task, steps, seed, batch_size)
    profile = PROFILE_FOR[framework]
    ref_hyper, note = dict(HYPER), ""
    record: dict[str, Any] = {
        "schema": RUN_SCHEMA,
        "framework": framework,
        "profile": profile,
        "task": task,
        "steps": steps,
        "dtype": dtype,
        "seed": seed,
        "batch_size": batch_size,
        "hyper": dict(HYPER),
        "reference_hyper": ref_hyper,
        "note": note,
        "run": None,
        "reference": None,
        "error": None,
        "skipped": None,
    }
    key = "keras" if framework.startswith("keras-") else framework
    try:
        if key == "keras":
            _set_keras_backend(framework)
        record["run"] = RUNNERS[key](data, dict(HYPER), dtype)
    except ImportError as exc:
        record["skipped"] = f"{framework} is not installed: {exc}"
    except Exception as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
    record["reference"] = run_reference(data, profile, ref_hyper, dtype)
    return record


def run_in_subprocess(
    framework: str, task: str, steps: int = 200, dtype: str = "float64", seed: int = 0, timeout: float = 300.0
) -> dict[str, Any]:
    """:func:`run_closed_loop` in a fresh ``python -m conformance.closed_loop.suite`` process."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.json"
        cmd = [
            sys.executable,
            "-m",
            "conformance.closed_loop.suite",
            "--framework",
            framework,
            "--task",
            task,
            "--steps",
            str(steps),
            "--dtype",
            dtype,
            "--seed",
            str(seed),
            "--out",
            str(out),
        ]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "ADAMW_PARENT_PID": str(os.getpid())}
        env.pop("KERAS_BACKEND", None)
        started = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                cwd=Path(__file__).resolve().parents[2],
            )
        except subprocess.TimeoutExpired:
            return _failed(
                framework, task, steps, dtype, seed, f"timed out after {timeout:.0f} s: {' '.join(cmd)}"
            )
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr or proc.stdout)[-2000:]
            return _failed(
                framework,
                task,
                steps,
                dtype,
                seed,
                f"exit {proc.returncode} after {time.perf_counter() - started:.1f} s: {tail}",
            )
        result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        return result


def _failed(framework: str, task: str, steps: int, dtype: str, seed: int, error: str) -> dict[str, Any]:
    return {
        "schema": RUN_SCHEMA,
        "framework": framework,
        "profile": PROFILE_FOR[framework],
        "task": task,
        "steps": steps,
        "dtype": dtype,
        "seed": seed,
        "batch_size": 64,
        "hyper": dict(HYPER),
        "reference_hyper": dict(HYPER),
        "note": "",
        "run": None,
        "reference": None,
        "error": error,
        "skipped": None,
    }


def closed_loop_cases(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Report cases (mode ``closed_loop``) for run records from :func:`run_closed_loop`."""
    cases = [compare_to_reference(r) for r in results]
    torch_runs = {
        (r["task"], r["dtype"], r["steps"], r["seed"]): r
        for r in results
        if r["framework"] == "torch" and r.get("run")
    }
    for r in results:
        base = torch_runs.get((r["task"], r["dtype"], r["steps"], r["seed"]))
        if r["framework"] != "torch" and base is not None and r.get("run"):
            cases.append(naive_port_case(r, base))
    return cases


def closed_loop_suite(
    frameworks: Sequence[str] = FRAMEWORKS,
    tasks: Sequence[str] = TASKS,
    steps: int = 200,
    dtype: str = "float64",
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Run every (framework, task) in its own process and return the report cases."""
    results = [run_in_subprocess(f, t, steps, dtype, seed) for t in tasks for f in frameworks]
    return closed_loop_cases(results)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m conformance.closed_loop.suite",
        description="Closed-loop training run: framework vs reference.",
    )
    p.add_argument("--framework", required=True, choices=FRAMEWORKS, help="the framework to train in")
    p.add_argument("--task", default="logreg", choices=FULL_TASKS, help="the model (default logreg)")
    p.add_argument("--steps", type=int, default=200, help="optimizer steps (default 200)")
    p.add_argument("--dtype", default="float64", choices=("float64", "float32"), help="default float64")
    p.add_argument("--seed", type=int, default=0, help="data and initialisation seed (default 0)")
    p.add_argument("--out", type=Path, required=True, help="run record JSON to write")
    p.add_argument("--cases", action="store_true", help="also print the report cases as JSON")
    a = p.parse_args(argv)
    from conformance.lifeline import watch_parent

    watch_parent()  # die with the runner that started this process
    if a.framework.startswith("keras-"):
        _set_keras_backend(a.framework)
    record = run_closed_loop(a.framework, a.task, a.steps, a.dtype, a.seed)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(record, allow_nan=True) + "\n", encoding="utf-8")
    if a.cases:
        print(json.dumps(closed_loop_cases([record]), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
