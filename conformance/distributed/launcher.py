"""Run distributed cases from the command line, on this machine or under ``torchrun``.

On one machine (the launcher starts and watches the ranks, :mod:`.supervise`)::

    python -m conformance.distributed.launcher --strategy fsdp2 --world-size 4 --out OUT
    python -m conformance.distributed.launcher --strategy ddp --world-size 2 \\
        --scenario dist_eps --implementation fused --dtype float64 --plant grad_sum_not_mean --out OUT
    python -m conformance.distributed.launcher --strategy fsdp2 --world-size 4 \\
        --checkpoint-at 5 --resume-world-size 2 --out OUT          # save at 4 ranks, resume at 2
    python -m conformance.distributed.launcher --jax --out OUT      # optax over 8 virtual devices
    python -m conformance.distributed.launcher --federated torch --out OUT

Under ``torchrun`` (detected from ``TORCHELASTIC_RUN_ID``, or ``RANK``/``WORLD_SIZE``/
``MASTER_ADDR`` set by another launcher), every process is one rank; the world size is torchrun's,
rank 0 grades the cases and writes the report. A checkpoint is two invocations sharing
``--checkpoint-dir`` (on a file system every node sees)::

    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m conformance.distributed.launcher --strategy fsdp2 --out /shared/out
    torchrun ... -m conformance.distributed.launcher --strategy fsdp2 --checkpoint-at 5 \\
        --phase save --checkpoint-dir /shared/ckpt --out /shared/save
    torchrun --nnodes 1 --nproc-per-node 4 ... -m conformance.distributed.launcher --strategy fsdp2 \\
        --checkpoint-at 5 --phase resume --saved-world-size 8 --checkpoint-dir /shared/ckpt \\
        --out /shared/resume

The report (``OUT/report.json``, the suite's schema) renders with ``adamw-conformance report OUT``.
Exit status: 0 when every case conforms, 1 otherwise, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conformance.distributed import cases, problem, rank
from conformance.distributed import federated as fd
from conformance.distributed import jax_sharding as jx
from conformance.report import schema as rp

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def under_torchrun() -> bool:
    """Whether this process is one rank started by torchrun (or another launcher that set the
    rendezvous variables) rather than the launcher of a local run."""
    if os.environ.get("TORCHELASTIC_RUN_ID"):
        return True
    return all(k in os.environ for k in TORCHRUN_ENV) and "ADAMW_PARENT_PID" not in os.environ


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m conformance.distributed.launcher", description=__doc__.split("\n")[0]
    )
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--strategy", choices=cases.STRATEGIES, help="a torch.distributed strategy")
    what.add_argument("--jax", action="store_true", help="optax over 8 virtual CPU devices")
    what.add_argument("--federated", choices=fd.FRAMEWORKS, help="FedAvg with this framework's clients")
    ap.add_argument("--world-size", type=int, default=None, help="ranks (default 2; torchrun: its own)")
    ap.add_argument("--scenario", action="append", choices=sorted(problem.BY_ID), help="repeatable")
    ap.add_argument(
        "--implementation", action="append", choices=problem.TORCH_IMPLEMENTATIONS, help="repeatable"
    )
    ap.add_argument("--dtype", action="append", choices=problem.DTYPES, help="repeatable (default both)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cuda: NCCL, one GPU per rank")
    ap.add_argument("--checkpoint-at", type=int, default=None, help="save after this step and resume")
    ap.add_argument("--resume-world-size", type=int, default=None, help="ranks of the resume (default: same)")
    ap.add_argument("--load-mode", choices=cases.LOAD_MODES, default="standard")
    ap.add_argument(
        "--phase", choices=("save", "resume"), default=None, help="torchrun: one phase per invocation"
    )
    ap.add_argument(
        "--saved-world-size", type=int, default=None, help="torchrun resume: the save's world size"
    )
    ap.add_argument("--checkpoint-dir", type=Path, default=None, help="torchrun: shared checkpoint directory")
    ap.add_argument("--variant", action="append", choices=fd.VARIANTS, help="federated protocol (repeatable)")
    ap.add_argument("--plant", default=None, help="a planted bug (docs/conformance/distributed.md)")
    ap.add_argument("--timeout", type=float, default=cases.DEFAULT_TIMEOUT, help="seconds per case")
    ap.add_argument("--out", type=Path, required=True)
    return ap


def torch_cases(ns: argparse.Namespace, world: int) -> list[cases.TorchCase]:
    scen = ns.scenario or ["dist_basic"]
    impls = ns.implementation or list(problem.TORCH_IMPLEMENTATIONS)
    dtypes = ns.dtype or list(problem.DTYPES)
    out = []
    for sc in scen:
        for impl in impls:
            for dt in dtypes:
                if ns.checkpoint_at is None:
                    out.append(
                        cases.TorchCase(ns.strategy, world, sc, impl, dt, ns.seed, ns.plant, device=ns.device)
                    )
                else:
                    saved = ns.saved_world_size or world
                    w2 = ns.resume_world_size or world
                    res = (saved, ns.checkpoint_at, ns.load_mode)
                    out.append(
                        cases.TorchCase(ns.strategy, w2, sc, impl, dt, ns.seed, ns.plant, res, ns.device)
                    )
    return out


def _check(ns: argparse.Namespace) -> str | None:
    """A usage error, or None."""
    for opt in ("world_size", "resume_world_size", "saved_world_size"):
        w = getattr(ns, opt)
        if w is not None:
            try:
                problem.check_world_size(w)
            except ValueError as exc:
                return f"--{opt.replace('_', '-')}: {exc}"
    if ns.checkpoint_at is not None and not 0 < ns.checkpoint_at < min(
        problem.get(s).steps for s in ns.scenario or ["dist_basic"]
    ):
        return f"--checkpoint-at {ns.checkpoint_at}: must be between 1 and the scenario's steps - 1"
    if ns.checkpoint_at is not None and ns.strategy not in cases.CHECKPOINT_STRATEGIES:
        ok = list(cases.CHECKPOINT_STRATEGIES)
        return f"--checkpoint-at with --strategy {ns.strategy}: checkpoints run for {ok}"
    if ns.timeout <= 0:
        return f"--timeout {ns.timeout}: must be > 0"
    return None


def write_report(out: Path, rows: Sequence[dict[str, Any]], command: str, seed: int) -> int:
    from conformance.runner import make_envelope

    report = rp.new_report(make_envelope(command, [seed]))
    report["cases"] = list(rows)  # type: ignore[arg-type]
    report["envelope"]["status"] = "complete"
    report["envelope"]["planned"] = len(rows)
    rp.write_atomic(out / "report.json", report)
    bad = [r for r in rows if r["verdict"] not in rp.PASSING]
    for r in rows:
        line = f"{r['verdict']:>12}  {r['id']}"
        d = r.get("distributed") or {}
        if d.get("rank_seconds"):
            line += f"  ranks {', '.join(f'{s:.2f}' for s in d['rank_seconds'])} s"
        print(line)
        if r["verdict"] in ("divergent", "error") and (r.get("diagnosis") or r.get("error")):
            detail = (r.get("diagnosis") or {}).get("detail") or r.get("error") or ""
            print("              " + detail.strip().splitlines()[0][:300])
    print(f"{len(rows)} cases, {len(bad)} not conforming; report: {out / 'report.json'}")
    return 1 if bad or not rows else 0


def run_torchrun(ns: argparse.Namespace) -> int:
    """This process is one rank: run the cases, rank 0 grades and reports."""
    world = int(os.environ["WORLD_SIZE"])
    problem.check_world_size(world)
    out: Path = ns.out
    out.mkdir(parents=True, exist_ok=True)
    ckpt = ns.checkpoint_dir or out / "ckpt"
    tcs = torch_cases(ns, world)
    if ns.checkpoint_at is not None and ns.phase is None:
        print("under torchrun a checkpoint is two runs: --phase save, then --phase resume", file=sys.stderr)
        return 2
    job_cases = []
    for c in tcs:
        if ns.phase == "save":
            d = cases._save_case(c, ckpt)
            d["key"] = c.save_key
        else:
            d = cases._job_case(c, ckpt)
        job_cases.append(d)
    job = {"strategy": ns.strategy, "world_size": world, "backend": "nccl" if ns.device == "cuda" else "gloo"}
    job.update(device=ns.device, out=str(out), cases=job_cases)
    rank.run_job(job)
    if int(os.environ["RANK"]) != 0:
        return 0
    records: dict[str, dict[str, Any]] = {}
    for line in (out / "rank0.jsonl").read_text(encoding="utf-8").splitlines():
        msg = json.loads(line)
        if msg.get("type") == "case":
            records[msg["key"]] = {"status": "ok", "record": msg}
    if ns.phase == "save":
        (ckpt / "saves.json").write_text(json.dumps(records), encoding="utf-8")
        print(f"saved {len(records)} checkpoint(s) under {ckpt}")
        return 0
    saves: dict[str, Any] = {}
    if ns.phase == "resume":
        saves = json.loads((ckpt / "saves.json").read_text(encoding="utf-8"))
    rows = [
        cases.grade_torch(
            c,
            records.get(c.key, {"status": "error", "error": "no record"}),
            saves.get(c.save_key) if c.resume else None,
        )
        for c in tcs
    ]
    return write_report(out, rows, " ".join(sys.argv), ns.seed)


def main(argv: Sequence[str] | None = None) -> int:
    ap = parser()
    ns = ap.parse_args(argv)
    err = _check(ns)
    if err:
        print(f"launcher: {err}", file=sys.stderr)
        return 2
    out: Path = ns.out
    command = " ".join(
        ["python -m conformance.distributed.launcher", *(sys.argv[1:] if argv is None else argv)]
    )
    dtypes = ns.dtype or list(problem.DTYPES)
    if ns.jax:
        if ns.plant not in (None, *jx.PLANTS):
            print(
                f"launcher: --plant {ns.plant!r}: expected one of {list(jx.PLANTS)} with --jax",
                file=sys.stderr,
            )
            return 2
        scen = [s for s in (ns.scenario or ["dist_basic"]) if s != "dist_groups"]
        rows = cases.jax_cases(out, dtypes, scen, ns.seed, ns.timeout, ns.plant)
        return write_report(out, rows, command, ns.seed)
    if ns.federated:
        if ns.plant not in (None, *fd.PLANTS):
            print(
                f"launcher: --plant {ns.plant!r}: expected one of {list(fd.PLANTS)} with --federated",
                file=sys.stderr,
            )
            return 2
        setup = fd.FedSetup()
        runs: list[tuple[str, str | None]] = [(v, None) for v in (ns.variant or fd.VARIANTS)]
        if ns.plant:
            runs = [(fd.PLANTS[ns.plant], ns.plant)]
        rows = []
        for dt in dtypes:
            res = fd.run_in_subprocess(
                ns.federated, setup, dt, ns.seed, runs, out / f"fed-{ns.federated}-{dt}.npz", ns.timeout
            )
            rows += [cases.grade_federated(ns.federated, setup, v, p, dt, ns.seed, res, 0.0) for v, p in runs]
        return write_report(out, rows, command, ns.seed)
    if ns.plant is not None and ns.plant not in (
        *rank.STEP_PLANTS,
        "extra_step_on_resume",
        "per_shard_step_on_resume",
    ):
        print(f"launcher: --plant {ns.plant!r}: unknown for --strategy", file=sys.stderr)
        return 2
    if under_torchrun():
        return run_torchrun(ns)
    tcs = torch_cases(ns, ns.world_size or 2)
    rows = cases.run_torch(tcs, out, ns.timeout)
    return write_report(out, rows, command, ns.seed)


if __name__ == "__main__":
    raise SystemExit(main())
