"""One rank of a launch: ``python -m conformance.distributed.rank JOB.json``.

The launcher (:mod:`.launcher`) starts one such process per rank, each in its own session, with
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT`` and
``ADAMW_PARENT_PID`` set; under ``torchrun`` the launcher calls :func:`run_job` itself. The job
(JSON) names the strategy, the backend, the device and the cases; each rank runs every case in
order and appends JSON lines to ``OUT/rank<r>.jsonl``:

* ``{"type": "start", "key"}`` when it begins a case, ``{"type": "end", "key"}`` when its part is
  done;
* rank 0 only: ``{"type": "case", "key", "rank_seconds", "ranks_agree", "shards", ...}`` once the
  case's trajectories are in ``OUT/<key>.npz``;
* ``{"type": "error", "key", "error"}`` if the case raised on this rank; the rank then exits with
  status 1 (the others may be stuck in a collective: the launcher ends them).

A rank exits when the launcher is gone (:mod:`conformance.lifeline`). ``faults`` in the job make a
rank hang or die at a case (the tests of the launcher's error rows).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from adapters.reference.oracle import round_to
from conformance import lifeline
from conformance.distributed import problem

#: Planted bugs a rank can apply while stepping (see docs/conformance/distributed.md).
STEP_PLANTS = ("grad_sum_not_mean",)


def _emit(fh: IO[str], obj: Mapping[str, Any]) -> None:
    fh.write(json.dumps(obj) + "\n")
    fh.flush()
    os.fsync(fh.fileno())


def _root_cause(exc: BaseException) -> str:
    """One line: the innermost ``SomethingError: message`` in ``exc``'s text (DCP wraps each rank's
    traceback in a CheckpointException), else the exception itself."""
    lines = [ln.strip() for ln in str(exc).splitlines()]
    causes = [ln for ln in lines if re.match(r"^[A-Za-z_.]*(Error|Exception): ", ln)]
    return causes[-1] if causes else f"{type(exc).__name__}: {lines[0] if lines else ''}"


def strategy_for(name: str) -> Any:
    if name == "ddp":
        from conformance.distributed.torch_ddp import DDP

        return DDP()
    if name == "zero":
        from conformance.distributed.torch_zero import ZeRO

        return ZeRO()
    if name == "fsdp2":
        from conformance.distributed.torch_fsdp import FSDP2

        return FSDP2()
    raise ValueError(f"strategy={name!r}: expected one of ('ddp', 'zero', 'fsdp2')")


def _fault(job: Mapping[str, Any], kind: str, rank: int, key: str) -> bool:
    f: Any = (job.get("faults") or {}).get(kind)
    return f is not None and int(f["rank"]) == rank and f["key"] == key


def run_case(
    job: Mapping[str, Any], case: Mapping[str, Any], rank: int, world: int, dev: Any
) -> dict[str, Any]:
    """Run one case on this rank; rank 0 returns its record (others an empty dict)."""
    import torch
    import torch.distributed as dist

    from conformance.distributed import checkpoint as ckpt
    from conformance.distributed.torch_common import Holder, digest, feed, single_process

    t0 = time.perf_counter()
    strat = strategy_for(job["strategy"])
    sc = problem.get(case["scenario"])
    dtype, impl, seed = case["dtype"], case["implementation"], int(case["seed"])
    plant = case.get("plant")
    cp = case.get("checkpoint")
    cfg = sc.config("torch")
    p0, raw = sc.inputs(seed)
    p0 = {k: round_to(v, dtype) for k, v in p0.items()}
    grads = problem.rounded(raw, dtype)
    holder = Holder(p0, dtype, dev, sc.fixed)
    module = strat.wrap(holder)
    opt = strat.optimizer(holder, cfg, impl)
    start, loaded = 0, None
    if cp is not None and cp["phase"] == "resume":
        ckpt.load(holder, opt, cp["dir"], cp.get("load", "standard"))
        start = int(cp["at"])
        if plant in ckpt.RESUME_PLANTS:
            ckpt.plant(strat.local_states(opt), plant)
        loaded = ckpt.loaded_steps(holder, strat.local_states(opt))
    traj: list[dict[str, Any]] = []
    for t in range(start, len(grads)):
        opt.zero_grad(set_to_none=True)
        feed(module, {n: problem.piece(g, rank, world, t) for n, g in grads[t].items()}, dtype, dev)
        if plant == "grad_sum_not_mean":  # the reduction summed instead of averaging
            with torch.no_grad():
                for p in holder.parameters():
                    if p.grad is not None:
                        p.grad.mul_(world)
        opt.step()
        traj.append(strat.full_params(holder))
        if cp is not None and cp["phase"] == "save" and t + 1 == int(cp["at"]):
            ckpt.save(holder, opt, cp["dir"])
    state = strat.full_state(holder, opt)
    shards = strat.shards(holder, opt)
    mine = {"rank": rank, "seconds": time.perf_counter() - t0, "digest": digest(traj[-1]) if traj else ""}
    every: list[Any] = [None] * world
    dist.all_gather_object(every, mine)
    if rank != 0:
        return {}
    arrays: dict[str, Any] = {}
    for i, pt in enumerate(traj):
        for n, a in pt.items():
            arrays[f"dist/{start + i + 1}/{n}"] = a
    for n, st in state.items():
        arrays[f"state/{n}/m"], arrays[f"state/{n}/v"] = st["m"], st["v"]
        arrays[f"state/{n}/step"] = np.asarray(st["step"])
    single_state: dict[str, Any] = {}
    if cp is None or cp["phase"] == "save":
        single, single_state = single_process(cfg, impl, p0, grads, dtype, dev, sc.fixed)
        for i, pt in enumerate(single):
            for n, a in pt.items():
                arrays[f"single/{i + 1}/{n}"] = a
    npz = Path(job["out"]) / f"{case['key']}.npz"
    np.savez(npz, **arrays)
    return {
        "type": "case",
        "key": case["key"],
        "npz": str(npz),
        "first_step": start + 1,
        "rank_seconds": [round(float(e["seconds"]), 4) for e in every],
        "ranks_agree": len({e["digest"] for e in every}) == 1,
        "shards": shards,
        "loaded_steps": loaded,
        "state_steps": {n: st["step"] for n, st in state.items()},
        "single_steps": {n: st["step"] for n, st in single_state.items()},
    }


def run_job(job: Mapping[str, Any], keys: Sequence[str] | None = None) -> int:
    """Run the job's cases (``keys``: only these) on this rank; 0 when every case finished."""
    import torch.distributed as dist

    from conformance.distributed.torch_common import init_group

    rank, world, dev = init_group(job.get("backend", "gloo"), job.get("device", "cpu"))
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"rank{rank}.jsonl", "a", encoding="utf-8") as fh:
        for case in job["cases"]:
            key = case["key"]
            if keys is not None and key not in keys:
                continue
            _emit(fh, {"type": "start", "key": key, "pid": os.getpid()})
            if _fault(job, "die", rank, key):
                os._exit(7)
            while _fault(job, "hang", rank, key):
                time.sleep(1.0)
            try:
                rec = run_case(job, case, rank, world, dev)
            except BaseException as exc:  # DCP's CheckpointException is a BaseException
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                # reported, then this rank ends: the group is unusable
                msg = f"{_root_cause(exc)}\n{traceback.format_exc(limit=4)[-2000:]}"
                _emit(fh, {"type": "error", "key": key, "error": msg})
                fh.close()
                sys.stderr.flush()
                os._exit(1)
            _emit(fh, {"type": "end", "key": key})
            if rec:
                _emit(fh, rec)
    dist.barrier()
    dist.destroy_process_group()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m conformance.distributed.rank JOB.json", file=sys.stderr)
        return 2
    lifeline.watch_parent()
    job = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    keys = job.get("only")
    return run_job(job, None if keys is None else list(keys))


if __name__ == "__main__":
    raise SystemExit(main())
