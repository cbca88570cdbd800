"""The distributed tier: plan, run and grade the cases, as report rows (``conformance/report``).

:func:`run_distributed` is what ``adamw-conformance run --distributed`` calls. It runs

* **torch strategies** (:mod:`.torch_ddp`, :mod:`.torch_zero`, :mod:`.torch_fsdp`) for each
  world size, implementation (forloop, foreach, fused), dtype and scenario (:mod:`.problem`): one
  launch per (strategy, world size), graded against the reference (:mod:`.grading`) and checked
  bit for bit against the single-process run of the same implementation;
* **sharded checkpoints** (:mod:`.checkpoint`): saved at step k at one world size, resumed at the
  same and at half of it, continued; bit for bit against the uninterrupted run, step counts
  included;
* **JAX** (:mod:`.jax_sharding`): optax over 8 virtual devices, ``NamedSharding`` and
  ``shard_map``, against the unsharded jit;
* **federated averaging** (:mod:`.federated`): torch and optax clients against the reference's
  own simulation, for the three ways of handling the moments.

Case ids follow :func:`conformance.report.schema.case_id`; the adapter names the strategy
(``torch-ddp``, ``torch-zero``, ``torch-fsdp2``, ``torch-ddp-dcp``, ``torch-fsdp2-dcp``,
``optax-jax``, ``torch-fedavg``, ``optax-fedavg``) and the scenario the world size
(``dist_basic-w4``; ``dist_basic-w4to2-k5-standard`` for a resume; ``fed_basic-k3-e3-r4``). Every
case carries the optional field ``distributed``: ``{"world_size", "strategy", "backend",
"rank_seconds": [...], "checks": {...}, ...}``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from conformance import tolerance
from conformance.distributed import federated as fd
from conformance.distributed import grading, problem, supervise
from conformance.distributed import jax_sharding as jx
from conformance.distributed.problem import F64
from conformance.report import schema as rp

STRATEGIES = ("ddp", "zero", "fsdp2")
CHECKPOINT_STRATEGIES = ("ddp", "fsdp2")
LOAD_MODES = ("standard", "partial", "filtered")
#: seconds a case may run (and a launch may take to start its first case) before it is an error
DEFAULT_TIMEOUT = 120.0
OnCase = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class TorchCase:
    """One torch case: a strategy at a world size, or a resume of a checkpoint (``resume``:
    (world size it was saved at, step, load mode))."""

    strategy: str
    world_size: int
    scenario: str
    implementation: str
    dtype: str
    seed: int = 0
    plant: str | None = None
    resume: tuple[int, int, str] | None = None
    device: str = "cpu"

    @property
    def backend(self) -> str:
        return "nccl" if self.device == "cuda" else "gloo"

    @property
    def adapter(self) -> str:
        return f"torch-{self.strategy}" + ("-dcp" if self.resume else "")

    @property
    def label(self) -> str:
        if self.resume:
            w1, k, mode = self.resume
            base = f"{self.scenario}-w{w1}to{self.world_size}-k{k}-{mode}"
        else:
            base = f"{self.scenario}-w{self.world_size}"
        return base + (f"+{self.plant}" if self.plant else "")

    @property
    def id(self) -> str:
        return rp.case_id(
            self.adapter, self.implementation, self.device, self.dtype, self.label, "free", self.seed
        )

    @property
    def key(self) -> str:
        return _safe(self.id)

    @property
    def save_key(self) -> str:
        assert self.resume is not None
        w1, k, _ = self.resume
        return _safe(
            f"save-{self.strategy}-w{w1}-{self.scenario}-{self.implementation}-{self.dtype}-s{self.seed}-k{k}"
        )

    def repro(self) -> str:
        cmd = ["python", "-m", "conformance.distributed.launcher", "--strategy", self.strategy]
        cmd += ["--world-size", str(self.resume[0] if self.resume else self.world_size)]
        cmd += ["--scenario", self.scenario, "--implementation", self.implementation, "--dtype", self.dtype]
        cmd += ["--seed", str(self.seed), "--device", self.device]
        if self.resume:
            cmd += ["--checkpoint-at", str(self.resume[1]), "--resume-world-size", str(self.world_size)]
            cmd += ["--load-mode", self.resume[2]]
        if self.plant:
            cmd += ["--plant", self.plant]
        return " ".join([*cmd, "--out", "adamw-repro"])


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


# ------------------------------------------------------------------------------------ planning
def plan_torch(
    world_sizes: Sequence[int],
    *,
    strategies: Sequence[str] = STRATEGIES,
    implementations: Sequence[str] = problem.TORCH_IMPLEMENTATIONS,
    dtypes: Sequence[str] = problem.DTYPES,
    scenarios: Sequence[str] | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> list[TorchCase]:
    ids = list(scenarios) if scenarios else [s.id for s in problem.DIST_SCENARIOS if "default" in s.tags]
    return [
        TorchCase(st, w, sc, impl, dt, seed, device=device)
        for st in strategies
        for w in world_sizes
        for sc in ids
        for impl in implementations
        for dt in dtypes
    ]


def checkpoint_pairs(world_sizes: Sequence[int]) -> list[tuple[int, int]]:
    """(saved at, resumed at): each world size to itself and to half of it (4 -> 2, 2 -> 1)."""
    out = []
    for w in sorted(set(world_sizes), reverse=True):
        out.append((w, w))
        if w > 1:
            out.append((w, w // 2))
    return out


def plan_checkpoint(
    world_sizes: Sequence[int],
    *,
    strategies: Sequence[str] = CHECKPOINT_STRATEGIES,
    implementations: Sequence[str] = problem.TORCH_IMPLEMENTATIONS,
    dtypes: Sequence[str] = problem.DTYPES,
    seed: int = 0,
) -> list[TorchCase]:
    """``dist_basic`` resumed with every implementation and dtype (torch's standard recipe), and
    ``dist_groups`` (a parameter without state at the checkpoint) in each load mode."""
    basic, groups = problem.get("dist_basic"), problem.get("dist_groups")
    out = []
    for st in strategies:
        for w1, w2 in checkpoint_pairs(world_sizes):
            for impl in implementations:
                for dt in dtypes:
                    out.append(
                        TorchCase(
                            st, w2, basic.id, impl, dt, seed, resume=(w1, basic.checkpoint_at, "standard")
                        )
                    )
            impl = "foreach" if "foreach" in implementations else implementations[0]
            dt = "float32" if "float32" in dtypes else dtypes[0]
            for mode in LOAD_MODES:
                out.append(
                    TorchCase(st, w2, groups.id, impl, dt, seed, resume=(w1, groups.checkpoint_at, mode))
                )
    return out


def _job_case(c: TorchCase, ckpt_root: Path) -> dict[str, Any]:
    d: dict[str, Any] = {
        "key": c.key,
        "scenario": c.scenario,
        "implementation": c.implementation,
        "dtype": c.dtype,
        "seed": c.seed,
        "plant": c.plant,
    }
    if c.resume:
        _, k, mode = c.resume
        d["checkpoint"] = {"phase": "resume", "at": k, "dir": str(ckpt_root / c.save_key), "load": mode}
    return d


def _save_case(c: TorchCase, ckpt_root: Path) -> dict[str, Any]:
    assert c.resume is not None
    return {
        "key": c.save_key,
        "scenario": c.scenario,
        "implementation": c.implementation,
        "dtype": c.dtype,
        "seed": c.seed,
        "plant": None,
        "checkpoint": {"phase": "save", "at": c.resume[1], "dir": str(ckpt_root / c.save_key)},
    }


def _groups(cases: Iterable[TorchCase], by_save: bool = False) -> dict[tuple[str, int, str], list[TorchCase]]:
    out: dict[tuple[str, int, str], list[TorchCase]] = {}
    for c in cases:
        w = c.resume[0] if (by_save and c.resume) else c.world_size
        out.setdefault((c.strategy, w, c.device), []).append(c)
    return out


# ------------------------------------------------------------------------------------ grading
def _blank(
    id_: str,
    adapter: str,
    impl: str,
    device: str,
    dtype: str,
    scenario: str,
    profile: str,
    seed: int,
    steps: int,
) -> dict[str, Any]:
    return {
        "id": id_,
        "adapter": adapter,
        "implementation": impl,
        "device": device,
        "dtype": dtype,
        "scenario": scenario,
        "mode": "free",
        "profile": profile,
        "seed": seed,
        "steps": steps,
        "verdict": "error",
        "acceptable_flag": None,
        "metrics": {},
        "bound": {},
        "first_divergence": None,
        "diagnosis": None,
        "error": None,
        "repro": "",
        "series": rp.empty_series(),
        "duration_s": 0.0,
    }


def _torch_blank(c: TorchCase) -> dict[str, Any]:
    case = _blank(
        c.id,
        c.adapter,
        c.implementation,
        c.device,
        c.dtype,
        c.label,
        "torch",
        c.seed,
        problem.get(c.scenario).steps,
    )
    case["repro"] = c.repro()
    dist: dict[str, Any] = {
        "world_size": c.world_size,
        "strategy": c.strategy,
        "backend": c.backend,
        "rank_seconds": [],
    }
    if c.resume:
        dist["resumed_from"] = {"world_size": c.resume[0], "step": c.resume[1], "load": c.resume[2]}
    if c.plant:
        dist["plant"] = c.plant
    case["distributed"] = dist
    return case


def _traj(z: Any, prefix: str, steps: Iterable[int], names: Iterable[str]) -> list[dict[str, F64]]:
    names = list(names)
    return [{n: np.asarray(z[f"{prefix}/{t}/{n}"], np.float64) for n in names} for t in steps]


def _fill(case: dict[str, Any], fields: Mapping[str, Any]) -> None:
    for k in ("verdict", "metrics", "first_divergence", "series", "bound", "diagnosis"):
        case[k] = fields[k]


def grade_torch(
    c: TorchCase, res: Mapping[str, Any], save: Mapping[str, Any] | None = None, diagnose: bool = True
) -> dict[str, Any]:
    """The report row of a torch case from its launch result (``save``: the save phase's, for a
    resume)."""
    case = _torch_blank(c)
    if res.get("status") != "ok":
        case["error"] = res.get("error", "no result")
        return case
    if c.resume and (save is None or save.get("status") != "ok"):
        case["error"] = "the checkpoint was not written: " + str((save or {}).get("error", "no save result"))
        return case
    rec = res["record"]
    sc = problem.get(c.scenario)
    cfg = sc.config("torch")
    p0, grads = sc.inputs(c.seed)
    names = list(sc.shapes)
    T = len(grads)
    dist = case["distributed"]
    dist["rank_seconds"] = rec["rank_seconds"]
    dist["shards"] = rec["shards"]
    checks: dict[str, Any] = {"ranks_agree": rec["ranks_agree"]}
    failed: list[str] = []
    z = np.load(rec["npz"])
    if c.resume:
        k = c.resume[1]
        srec = save["record"]  # type: ignore[index]
        zs = np.load(srec["npz"])
        got = _traj(zs, "dist", range(1, k + 1), names) + _traj(z, "dist", range(k + 1, T + 1), names)
        first = grading.bitwise_equal(
            _traj(z, "dist", range(k + 1, T + 1), names), _traj(zs, "dist", range(k + 1, T + 1), names)
        )
        checks["bitwise_vs_uninterrupted"] = first is None
        if first is not None:
            failed.append(f"not bit-identical to the uninterrupted run from step {k + first} on")
        want = grading.ref_counts(cfg, p0, grads, c.dtype, k)
        loaded = {n: float(x) for n, x in (rec.get("loaded_steps") or {}).items()}
        bad_load = grading.steps_mismatch(loaded, want)
        checks["loaded_step_counts"] = loaded
        checks["loaded_step_counts_match"] = not bad_load
        if bad_load:
            failed.append(f"step counts right after loading {_fmt_counts(bad_load)}")
    else:
        got = _traj(z, "dist", range(1, T + 1), names)
        single = _traj(z, "single", range(1, T + 1), names)
        first = grading.bitwise_equal(got, single)
        checks["bitwise_vs_single_process"] = first is None
        if first is not None:
            failed.append(
                f"not bit-identical to the single-process run of {c.implementation} from step {first} on"
            )
    if not rec["ranks_agree"]:
        failed.append("the ranks' parameters differ from each other after the last step")
    fields = grading.grade(cfg, p0, grads, got, c.dtype, device=c.device, diagnose=diagnose)
    bad = grading.steps_mismatch({n: float(x) for n, x in rec["state_steps"].items()}, fields["ref_steps"])
    checks["step_counts"] = rec["state_steps"]
    checks["step_counts_match"] = not bad
    if bad:
        failed.append(f"final step counts {_fmt_counts(bad)}")
    _fill(case, fields)
    grading.checks_verdict(case, failed)
    dist["checks"] = checks
    return case


def _fmt_counts(bad: Mapping[str, tuple[float | None, int]]) -> str:
    return ", ".join(
        f"{n}: {'no state' if g is None else int(g)} (reference {k})" for n, (g, k) in bad.items()
    )


# ------------------------------------------------------------------------------------- running
def cuda_devices() -> int:
    """CUDA devices torch sees (0 without an NVIDIA driver; asked in a subprocess, so this
    process never imports torch)."""
    return cuda_info()[0]


def cuda_info() -> tuple[int, str | None]:
    """(CUDA devices torch sees, the first one's name), asked in one subprocess; (0, None)
    without an NVIDIA driver."""
    if shutil.which("nvidia-smi") is None:
        return 0, None
    code = (
        "import torch; n = torch.cuda.device_count(); print(n); "
        "print(torch.cuda.get_device_name(0) if n else '')"
    )
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        count, _, name = out.stdout.strip().partition("\n")
        return int(count or 0), name.strip() or None
    except (OSError, ValueError, subprocess.SubprocessError):
        return 0, None


def run_torch(
    cases: Sequence[TorchCase],
    out: Path,
    timeout: float,
    on_case: OnCase | None = None,
    diagnose: bool = True,
) -> list[dict[str, Any]]:
    """Run and grade torch cases (plain and resumed), one launch per (strategy, world size)."""
    rows: list[dict[str, Any]] = []
    ckpt_root = out / "ckpt"

    def emit(row: dict[str, Any]) -> None:
        rows.append(row)
        if on_case:
            on_case(row)

    plain = [c for c in cases if not c.resume]
    for (st, w, dev), group in _groups(plain).items():
        job = _job(st, w, dev, [_job_case(c, ckpt_root) for c in group])
        t0 = time.perf_counter()
        results, _ = supervise.run_job(job, out / f"{st}-w{w}-{dev}", timeout)
        wall = round(time.perf_counter() - t0, 3)
        for c in group:
            res = results.get(c.key, {"status": "error", "error": "not run"})
            row = grade_torch(c, res, diagnose=diagnose)
            row["duration_s"] = wall if row["verdict"] == "error" else _secs(row)
            row["distributed"]["launch_seconds"] = wall
            emit(row)
    resumed = [c for c in cases if c.resume]
    saves: dict[str, dict[str, Any]] = {}
    for (st, w1, dev), group in _groups(resumed, by_save=True).items():
        unique = {c.save_key: _save_case(c, ckpt_root) for c in group}
        for d in unique.values():
            shutil.rmtree(d["checkpoint"]["dir"], ignore_errors=True)
        job = _job(st, w1, dev, list(unique.values()))
        results, _ = supervise.run_job(job, out / f"save-{st}-w{w1}-{dev}", timeout)
        saves.update(results)
    for (st, w2, dev), group in _groups(resumed).items():
        job = _job(st, w2, dev, [_job_case(c, ckpt_root) for c in group])
        runnable = [
            d
            for d, c in zip(job["cases"], group, strict=True)
            if saves.get(c.save_key, {}).get("status") == "ok"
        ]
        resumed_res: dict[str, dict[str, Any]] = {}
        t0 = time.perf_counter()
        if runnable:
            resumed_res, _ = supervise.run_job(
                {**job, "cases": runnable}, out / f"resume-{st}-w{w2}-{dev}", timeout
            )
        wall = round(time.perf_counter() - t0, 3)
        for c in group:
            res = resumed_res.get(
                c.key, {"status": "error", "error": "not run: the checkpoint was not written"}
            )
            row = grade_torch(c, res, saves.get(c.save_key), diagnose=diagnose)
            row["duration_s"] = _secs(row)
            row["distributed"]["launch_seconds"] = wall
            emit(row)
    return rows


def _secs(row: Mapping[str, Any]) -> float:
    return round(float(max(row.get("distributed", {}).get("rank_seconds") or [0.0])), 4)


def _job(strategy: str, world: int, device: str, cases: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "strategy": strategy,
        "world_size": problem.check_world_size(world),
        "backend": "nccl" if device == "cuda" else "gloo",
        "device": device,
        "cases": cases,
    }


def nccl_skips(world_sizes: Sequence[int], strategies: Sequence[str], devices: int) -> list[dict[str, Any]]:
    """One ``skipped`` row per (strategy, world size) the GPUs here cannot run with NCCL."""
    rows = []
    for st in strategies:
        for w in world_sizes:
            if devices >= w:
                continue
            c = TorchCase(st, w, "dist_basic", "foreach", "float32", device="cuda")
            row = _torch_blank(c)
            row["verdict"] = "skipped"
            row["error"] = (
                f"NCCL needs one CUDA device per rank: world size {w}, {devices} CUDA device(s) visible "
                "(the nccl code path runs where there are enough)"
            )
            rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------- JAX
def jax_cases(
    out: Path,
    dtypes: Sequence[str],
    scenarios: Sequence[str],
    seed: int,
    timeout: float,
    plant: str | None = None,
    diagnose: bool = True,
) -> list[dict[str, Any]]:
    """Run the JAX variants per (scenario, dtype), one process each, and grade them."""
    rows = []
    for sid in scenarios:
        for dt in dtypes:
            t0 = time.perf_counter()
            suffix = f"+{plant}" if plant else ""
            res = jx.run_in_subprocess(sid, dt, seed, out / f"jax-{sid}-{dt}{suffix}.npz", timeout, plant)
            wall = time.perf_counter() - t0
            rows.extend(grade_jax(sid, dt, seed, res, wall, plant, diagnose))
    return rows


def grade_jax(
    sid: str,
    dtype: str,
    seed: int,
    res: Mapping[str, Any],
    wall: float,
    plant: str | None = None,
    diagnose: bool = True,
) -> list[dict[str, Any]]:
    sc = jx.scenario(sid)
    cfg = sc.config("optax")
    p0, grads = sc.inputs(seed)
    rows = []
    label = f"{sid}-d{jx.DEVICES}" + (f"+{plant}" if plant else "")
    for variant in jx.VARIANTS:
        cid = rp.case_id("optax-jax", variant, "cpu", dtype, label, "free", seed)
        case = _blank(cid, "optax-jax", variant, "cpu", dtype, label, "optax", seed, sc.steps)
        repro = ["python", "-m", "conformance.distributed.launcher", "--jax", "--scenario", sid]
        repro += ["--dtype", dtype, "--seed", str(seed), "--out", "adamw-repro"]
        case["repro"] = " ".join(repro + (["--plant", plant] if plant else []))
        dist: dict[str, Any] = {
            "world_size": jx.DEVICES,
            "strategy": variant,
            "backend": "xla-cpu (virtual devices)",
        }
        case["distributed"] = dist
        if "error" in res:
            case["error"] = res["error"]
            case["duration_s"] = round(wall, 3)
            rows.append(case)
            continue
        got = res["trajectories"][variant]
        dist["rank_seconds"] = [round(float(res["seconds"][variant]), 4)]
        if variant in res.get("shardings", {}):
            dist["shards"] = res["shardings"][variant]
        first = grading.bitwise_equal(got, res["trajectories"]["unsharded"])
        dist["checks"] = {"bitwise_vs_unsharded": first is None, "bitwise_expected": jx.BITWISE[variant]}
        fields = grading.grade(cfg, p0, grads, got, dtype, diagnose=diagnose)
        _fill(case, fields)
        if jx.BITWISE[variant] and first is not None:
            grading.checks_verdict(case, [f"not bit-identical to the unsharded jit from step {first} on"])
        elif first is not None:
            dist["checks"]["why_not_bitwise"] = (
                "XLA:CPU contracts v = b2*v + (1-b2)*g*g into a fused multiply-add; which product stays "
                "unrounded depends on the fused computation, and the division of the psum by 8 fused "
                "into the update changes it (one ulp of v in a few elements)"
            )
        case["duration_s"] = round(float(res["seconds"][variant]), 4)
        rows.append(case)
    return rows


# ---------------------------------------------------------------------------------- federated
def federated_cases(
    out: Path,
    dtypes: Sequence[str],
    seed: int,
    timeout: float,
    setup: fd.FedSetup | None = None,
    frameworks: Sequence[str] = fd.FRAMEWORKS,
    plants: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Each framework's FedAvg (every variant, and ``plants``) against the reference simulation."""
    setup = setup or fd.FedSetup()
    runs: list[tuple[str, str | None]] = [(v, None) for v in fd.VARIANTS]
    runs += [(fd.PLANTS[p], p) for p in plants]
    rows = []
    for fw in frameworks:
        for dt in dtypes:
            t0 = time.perf_counter()
            res = fd.run_in_subprocess(fw, setup, dt, seed, runs, out / f"fed-{fw}-{dt}.npz", timeout)
            wall = time.perf_counter() - t0
            for variant, plant in runs:
                rows.append(grade_federated(fw, setup, variant, plant, dt, seed, res, wall))
    return rows


def grade_federated(
    fw: str,
    setup: fd.FedSetup,
    variant: str,
    plant: str | None,
    dtype: str,
    seed: int,
    res: Mapping[str, Any],
    wall: float,
) -> dict[str, Any]:
    from conformance import compare as cmp

    label = setup.id + (f"+{plant}" if plant else "")
    adapter = f"{fw}-fedavg"
    cid = rp.case_id(adapter, variant, "cpu", dtype, label, "free", seed)
    case = _blank(cid, adapter, variant, "cpu", dtype, label, fd.PROFILE[fw], seed, setup.rounds)
    case["repro"] = (
        f"python -m conformance.distributed.launcher --federated {fw} --variant {variant} --dtype {dtype} "
        f"--seed {seed} --out adamw-repro" + (f" --plant {plant}" if plant else "")
    )
    key = variant + (f"+{plant}" if plant else "")
    dist: dict[str, Any] = {
        "world_size": setup.clients,
        "strategy": f"fedavg-{variant}",
        "backend": "simulated clients (one process)",
        "clients": setup.clients,
        "rounds": setup.rounds,
        "local_steps": setup.local_steps,
    }
    if plant:
        dist["plant"] = plant
    case["distributed"] = dist
    if "error" in res:
        case["error"] = res["error"]
        case["duration_s"] = round(wall, 3)
        return case
    got = res["servers"][key]
    dist["rank_seconds"] = [round(float(res["seconds"][key]), 4)]
    cfg, _, trace = fd.reference(fw, setup, variant, dtype, seed)
    _, _, emu = fd.reference(fw, setup, variant, dtype, seed, in_dtype=True)
    bounds = fd.fed_bounds(cfg, setup, variant, dtype, seed, trace)
    r = cmp.compare(trace.server, got, bounds, dtype, emu.server)
    spec = tolerance.spec_for(dtype, "cpu", "ref_vs_impl")
    case.update(
        verdict="exact" if r.exact else ("within_bound" if r.max_ratio <= 1 else "divergent"),
        metrics=r.metrics,
        first_divergence=r.first_divergence,
        series={"step": r.series_step, "err": r.series_err},
        bound={
            "kind": spec.kind,
            "dtype": dtype,
            "device": "cpu",
            "c_step": spec.c_step,
            "unit_roundoff": spec.unit_roundoff,
            "max_ratio": r.max_ratio,
        },
    )
    if case["verdict"] == "divergent":
        case["diagnosis"] = _fed_diagnosis(fw, setup, variant, dtype, seed, got)
    case["duration_s"] = round(float(res["seconds"][key]), 4)
    return case


_MEANS = {
    "reset": "the clients restart their optimizer every round",
    "local": "the clients keep their own moments",
    "averaged": "the server averages the moments",
}


def _fed_diagnosis(
    fw: str, setup: fd.FedSetup, variant: str, dtype: str, seed: int, got: Sequence[Mapping[str, F64]]
) -> dict[str, Any]:
    """Which protocol variant explains a divergent federated run (each graded in its bound)."""
    from conformance import compare as cmp

    scored = []
    for other in fd.VARIANTS:
        if other == variant:
            continue
        cfg, _, tr = fd.reference(fw, setup, other, dtype, seed)
        b = fd.fed_bounds(cfg, setup, other, dtype, seed, tr)
        scored.append((cmp.compare(tr.server, list(got), b, dtype).max_ratio, other))
    scored.sort()
    best, name = scored[0]
    cands = [{"name": f"variant={o}", "score": s} for s, o in scored]
    if best <= 1:
        return {
            "explained_by": f"variant={name}",
            "kind": "knob",
            "detail": f"the server trajectory is the '{name}' protocol's, not '{variant}' ({_MEANS[name]})",
            "candidates": cands,
        }
    return {
        "explained_by": None,
        "kind": None,
        "detail": f"no protocol variant explains it; closest variant={name} (bound ratio {best:.3g})",
        "candidates": cands,
    }


# ---------------------------------------------------------------------------------- the tier
def run_distributed(
    out_dir: Path | str,
    world_sizes: Sequence[int] = (2, 4),
    timeout: float = DEFAULT_TIMEOUT,
    on_case: OnCase | None = None,
    *,
    strategies: Sequence[str] = STRATEGIES,
    implementations: Sequence[str] = problem.TORCH_IMPLEMENTATIONS,
    dtypes: Sequence[str] = problem.DTYPES,
    scenarios: Sequence[str] | None = None,
    seed: int = 0,
    checkpoint: bool = True,
    jax: bool = True,
    federated: bool = True,
    federated_frameworks: Sequence[str] = fd.FRAMEWORKS,
    nccl: bool = True,
    diagnose: bool = True,
    on_plan: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Run the distributed tier and return its report cases (``conformance.report.schema.Case``
    plus the optional ``distributed`` field), calling ``on_case(case)`` as each is graded.

    Raw files (rank logs and stderr, trajectories, checkpoints) go to ``OUT_DIR/distributed/``.
    ``timeout``: seconds a case may run (and a launch may take to reach its first case) before
    its ranks are killed and it becomes an ``error`` row; the remaining cases run in a fresh
    launch. World sizes must be powers of two (:func:`conformance.distributed.problem.check_world_size`).
    ``on_plan(n)`` is called once, before any case runs, with the number of cases planned.
    """
    for w in world_sizes:
        problem.check_world_size(w)
    if timeout <= 0:
        raise ValueError(f"timeout={timeout!r}: must be > 0 seconds")
    out = Path(out_dir) / "distributed"
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []

    def emit(row: dict[str, Any]) -> None:
        rows.append(row)
        if on_case:
            on_case(row)

    torch_cases = plan_torch(
        world_sizes,
        strategies=strategies,
        implementations=implementations,
        dtypes=dtypes,
        scenarios=scenarios,
        seed=seed,
    )
    if nccl and strategies:
        # NCCL needs one GPU per rank: every power-of-two world size the GPUs here allow (1 on a
        # one-GPU machine: the nccl code path, no reduction), and a skipped row for the others.
        gpus = cuda_devices()
        nccl_sizes = sorted({w for w in (1, *world_sizes) if w <= gpus})
        torch_cases += plan_torch(
            nccl_sizes,
            strategies=strategies,
            implementations=implementations,
            dtypes=dtypes,
            scenarios=scenarios,
            seed=seed,
            device="cuda",
        )
        for row in nccl_skips(world_sizes, strategies, gpus):
            emit(row)
    if checkpoint and strategies:
        ck = [s for s in strategies if s in CHECKPOINT_STRATEGIES]
        torch_cases += plan_checkpoint(
            world_sizes, strategies=ck, implementations=implementations, dtypes=dtypes, seed=seed
        )
    jax_ids = [
        s for s in (list(scenarios) if scenarios else ["dist_basic", "dist_eps"]) if s != "dist_groups"
    ]
    if on_plan:
        n_fed = len(federated_frameworks) * len(dtypes) * len(fd.VARIANTS) if federated else 0
        n_jax = len(jax_ids) * len(dtypes) * len(jx.VARIANTS) if jax else 0
        on_plan(len(rows) + len(torch_cases) + n_jax + n_fed)
    run_torch(torch_cases, out, timeout, emit, diagnose)
    if jax:
        ids = jax_ids
        for row in jax_cases(
            out, dtypes, [s for s in ids if s != "dist_groups"], seed, timeout, diagnose=diagnose
        ):
            emit(row)
    if federated and federated_frameworks:
        for row in federated_cases(out, dtypes, seed, timeout, frameworks=federated_frameworks):
            emit(row)
    return rows
