"""Subprocess entry: run one adapter over its cases, appending JSON lines as it goes.

``python -m conformance.worker --adapter torch --out results.jsonl [--scenario ...]
[--dtype ...] [--mode ...] [--seeds ...] [--device cpu] [--implementation ...] [--quick|--full]
[--skip-ids FILE]``

The worker exits when the process named in ``ADAMW_PARENT_PID`` (the runner) is gone
(:mod:`conformance.lifeline`). Lines (each flushed and fsynced at once, so a crash loses nothing
already done; non-finite numbers as ``"nan"``/``"inf"``/``"-inf"`` strings):
``{"type": "start", "adapter", "versions", "info", "devices", "precision", "plan": [case ids]}``,
then one ``{"type": "case", "case": Case}`` per case, then ``{"type": "done"}``. If the adapter
cannot be loaded: ``{"type": "fatal", "error"}`` and exit status 2.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib
import os
import platform
import subprocess
import sys
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

import numpy as np

if TYPE_CHECKING:
    from adapters.protocol import Adapter
    from conformance.execute import CaseSpec


def _emit(fh: IO[str], obj: dict[str, Any]) -> None:
    from conformance.report.schema import _json_default, dumps

    fh.write(dumps(obj, default=_json_default) + "\n")  # NaN/inf as strings: lossless
    fh.flush()
    os.fsync(fh.fileno())


def add_selection_args(ap: argparse.ArgumentParser) -> None:
    """Case-selection options shared by the worker and ``adamw-conformance run``."""
    ap.add_argument(
        "--scenario",
        action="append",
        default=None,
        metavar="ID",
        help="scenario id (repeatable; 'adamw-conformance list' shows them)",
    )
    ap.add_argument(
        "--dtype",
        action="append",
        default=None,
        choices=["float64", "float32", "float16", "bfloat16"],
        help="floating-point format (repeatable; default: each scenario's)",
    )
    ap.add_argument(
        "--mode",
        action="append",
        default=None,
        choices=["free", "teacher_forced"],
        help="free-running or teacher-forced (repeatable; default both, teacher-forced "
        "for the quick scenarios only unless --full, --mode or --scenario)",
    )
    ap.add_argument("--seeds", default=None, help="comma list or range a-b (default 0; --full: 0-4)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="default cpu")
    ap.add_argument(
        "--implementation",
        action="append",
        default=None,
        metavar="NAME",
        help="run only this implementation of the adapters that have it (repeatable)",
    )
    ap.add_argument("--quick", action="store_true", help="the quick scenario subset")
    ap.add_argument("--full", action="store_true", help="long runs, all seeds, all scenarios")
    ap.add_argument("--no-diagnose", action="store_true", help="skip the knob search")
    ap.add_argument(
        "--diagnose-budget",
        type=float,
        default=None,
        help="seconds of knob search per adapter process (default 10; --full: none)",
    )


#: Implementations the default (non ``--full``) run covers, where not all of them.
DEFAULT_IMPLEMENTATIONS: dict[str, list[str]] = {"optax": ["jit"], "torch-adam": ["foreach"]}


def _default_impls(ns: argparse.Namespace, name: str) -> list[str] | None:
    return None if ns.full else DEFAULT_IMPLEMENTATIONS.get(name)


def plan_cases(adapter: Adapter, name: str, ns: argparse.Namespace) -> list[CaseSpec]:
    """The cases ``adamw-conformance run`` runs for one adapter: the selection ``ns`` holds the
    options of :func:`add_selection_args` (``scenario``, ``dtype``, ``mode``, ``seeds``,
    ``device``, ``implementation``, ``quick``, ``full``); ``name`` prefixes the case ids and picks
    the default implementations. The worker and the pytest plug-in both plan here, so they run
    the same cases.

    Teacher-forced cases run for every scenario that allows them with ``--full``, ``--mode`` or
    ``--scenario``; otherwise only for the quick scenarios (keeps the default run short).
    """
    from conformance.execute import plan
    from conformance.scenarios import select

    return plan(
        adapter,
        name,
        select(ns.scenario, quick=ns.quick, full=ns.full),
        dtypes=ns.dtype,
        modes=tuple(ns.mode or ("free", "teacher_forced")),
        seeds=parse_seeds(ns.seeds, ns.full),
        device=ns.device,
        implementations=ns.implementation or _default_impls(ns, name),
        all_teacher_forced=bool(ns.full or ns.mode or ns.scenario),
    )


def parse_seeds(text: str | None, full: bool = False) -> list[int]:
    if not text:
        return list(range(5)) if full else [0]
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                a, b = part.split("-", 1)
                out.extend(range(int(a), int(b) + 1))
            elif part:
                out.append(int(part))
        except ValueError:
            raise SystemExit(f"--seeds {text!r}: expected integers like '0,3' or '0-19'") from None
    if any(s < 0 for s in out):
        raise SystemExit(f"--seeds {text!r}: seeds must be >= 0")
    return out


def device_info(device: str) -> list[dict[str, Any]]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    devs: list[dict[str, Any]] = [{"kind": "cpu", "model": cpu, "driver": None, "runtime": None}]
    if device == "cuda":
        driver = _nvidia_driver()
        torch = sys.modules.get("torch")
        jax = sys.modules.get("jax")
        if torch is not None and torch.cuda.is_available():
            devs.append(
                {
                    "kind": "cuda",
                    "model": torch.cuda.get_device_name(0),
                    "driver": driver,
                    "runtime": f"CUDA {torch.version.cuda} (torch)",
                }
            )
        elif jax is not None:
            gpus = [d for d in jax.devices() if d.platform == "gpu"]
            if gpus:
                devs.append(
                    {
                        "kind": "cuda",
                        "model": gpus[0].device_kind,
                        "driver": driver,
                        "runtime": f"jax {jax.__version__}",
                    }
                )
    return devs


def _nvidia_driver() -> str | None:
    """The NVIDIA driver version from nvidia-smi, or None where it cannot be read."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    line = out.stdout.strip().splitlines()
    return line[0].strip() if out.returncode == 0 and line else None


#: Frameworks whose matmul precision the worker sets (and reports) before the first case.
PRECISION_FRAMEWORKS = ("torch", "jax", "tensorflow")


def load_frameworks(versions: Mapping[str, str]) -> None:
    """Import the adapter's frameworks now (adapters import them lazily, at the first case), so
    that :func:`disable_reduced_precision` reaches them and the report states their settings."""
    for mod in PRECISION_FRAMEWORKS:
        if mod in versions and mod not in sys.modules:
            with contextlib.suppress(Exception):  # a broken import fails the first case, visibly
                importlib.import_module(mod)


def disable_reduced_precision() -> None:
    """TF32 and reduced-precision matmuls off in every framework this process has loaded.

    AdamW itself has no matmul, but the closed-loop tasks do, and the report must state the
    precision every comparison ran under.
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
    jax = sys.modules.get("jax")
    if jax is not None:
        jax.config.update("jax_default_matmul_precision", "highest")
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        tf.config.experimental.enable_tensor_float_32_execution(False)


def precision_info() -> dict[str, Any]:
    out: dict[str, Any] = {}
    torch = sys.modules.get("torch")
    if torch is not None:
        out["tf32"] = {
            "torch_cuda_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
            "torch_cudnn": bool(torch.backends.cudnn.allow_tf32),
        }
        out["matmul"] = {"torch_float32_matmul_precision": torch.get_float32_matmul_precision()}
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        out.setdefault("tf32", {})["tensorflow"] = bool(
            tf.config.experimental.tensor_float_32_execution_enabled()
        )
    jax = sys.modules.get("jax")
    if jax is not None:
        out.setdefault("matmul", {})["jax_default_matmul_precision"] = str(
            jax.config.jax_default_matmul_precision
        )
        out["jax_enable_x64"] = bool(jax.config.jax_enable_x64)
    from conformance.threads import threads_info

    out["threads"] = threads_info()
    return out


def traj_path(directory: Path, case_id: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_.[]" else "_" for ch in case_id)
    return Path(directory) / f"{safe}.npz"


#: Trajectories larger than this many values are not saved (the ``large`` scenarios would write
#: gigabytes); ``compare`` then has no CPU trajectory for them and skips them with the reason.
MAX_SAVED_VALUES = 20_000_000


def save_trajectory(directory: Path, case_id: str, traj: Sequence[dict[str, Any]]) -> None:
    """Parameters after every step, one ``(T, *shape)`` float64 array per name (no pickle)."""
    if sum(int(np.size(v)) for p in traj for v in p.values()) > MAX_SAVED_VALUES:
        return
    Path(directory).mkdir(parents=True, exist_ok=True)
    names = list(traj[0]) if traj else []
    arrays = {n: np.stack([np.asarray(p[n], np.float64) for p in traj]) for n in names}
    tmp = traj_path(directory, case_id).with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    os.replace(tmp, traj_path(directory, case_id))


def load_trajectory(path: Path) -> list[dict[str, Any]]:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    steps = len(next(iter(arrays.values()))) if arrays else 0
    return [{k: a[t] for k, a in arrays.items()} for t in range(steps)]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m conformance.worker")
    ap.add_argument(
        "--adapter",
        required=True,
        help="built-in name, package.module:factory or a wrapper spec (kind:pkg.Class)",
    )
    ap.add_argument("--name", default=None, help="name used in case ids (default: --adapter)")
    ap.add_argument("--out", required=True, type=Path, help="JSON-lines file to append to")
    ap.add_argument(
        "--save-traj",
        type=Path,
        default=None,
        help="directory for per-case trajectories (.npz; for cpu_vs_gpu compare)",
    )
    ap.add_argument(
        "--skip-ids",
        type=Path,
        default=None,
        help="file of case ids (one per line) already done: not run again (resume)",
    )
    add_selection_args(ap)
    ns = ap.parse_args(argv)
    from conformance.lifeline import watch_parent

    watch_parent()  # exit as soon as the runner is gone, whatever ended it
    np.seterr(all="ignore")
    name = ns.name or ns.adapter
    done: set[str] = set()
    if ns.skip_ids is not None:
        done = {ln.strip() for ln in ns.skip_ids.read_text(encoding="utf-8").splitlines() if ln.strip()}
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    with open(ns.out, "a", encoding="utf-8") as fh:
        try:
            from conformance.execute import Executor, load

            adapter = load(ns.adapter)
            cases = [c for c in plan_cases(adapter, name, ns) if c.id not in done]
            versions = adapter.versions()
        except BaseException as exc:
            _emit(
                fh,
                {
                    "type": "fatal",
                    "adapter": name,
                    "error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-3000:]}",
                },
            )
            return 2
        info = adapter.info
        load_frameworks(versions)
        disable_reduced_precision()
        _emit(
            fh,
            {
                "type": "start",
                "adapter": name,
                "versions": versions,
                "info": {
                    "name": info.name,
                    "framework": info.framework,
                    "profile": info.profile,
                    "implementations": list(info.implementations),
                    "dtypes": list(info.dtypes),
                    "devices": list(info.devices),
                },
                "devices": device_info(ns.device),
                "precision": precision_info(),
                "plan": [c.id for c in cases],
            },
        )
        budget = ns.diagnose_budget if ns.diagnose_budget is not None else (None if ns.full else 10.0)
        ex = Executor(adapter, diagnose=not ns.no_diagnose, diagnose_budget=budget)
        for c in cases:
            case = ex.run(c)
            if ns.save_traj is not None and ex.last_trajectory is not None:
                save_trajectory(ns.save_traj, case["id"], ex.last_trajectory)
            _emit(fh, {"type": "case", "case": case})
        _emit(fh, {"type": "done", "adapter": name})
    return 0


def exit_now(code: int) -> NoReturn:
    """End the process without the interpreter's teardown, once every output is written: the
    ``atexit`` handlers run and the streams are flushed, then ``os._exit``. TensorFlow's C++
    teardown alone took 0.85 s, during which the runner could not start the next worker."""
    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


if __name__ == "__main__":
    exit_now(main())
