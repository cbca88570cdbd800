"""Speed of the pure-Python reference: element-steps per second of ``adamw_ref.step``.

One run measures binary64, binary32 emulation, bfloat16 emulation and HighPrecision(50) at a few
tensor sizes (one parameter of n elements, torch profile, random gradients), and reports each
arithmetic's throughput relative to binary64. Results go to benchmarks/results/reference_speed.json
with the machine and the command.

    .venv/bin/python benchmarks/reference_speed.py [--sizes 1 64 1024 16384] [--min-time 0.5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import adamw_ref
from adamw_ref import BINARY32_ARITHMETIC, BINARY64_ARITHMETIC, HighPrecision, get_profile, init
from adamw_ref import step as ref_step
from adamw_ref.arithmetic import Arithmetic, arithmetic_for

HERE = Path(__file__).resolve().parent


def measure(arith: Arithmetic[Any], n: int, min_time: float, seed: int = 0) -> dict[str, Any]:
    """Steps of one n-element parameter until ``min_time`` seconds have passed (>= 3 steps)."""
    rng = random.Random(seed)
    cfg = get_profile("torch").config.replace(lr=1e-3, weight_decay=1e-2)
    params: Any = {"w": tuple(arith.vec([rng.uniform(-1, 1) for _ in range(n)]))}
    grads = [{"w": [rng.gauss(0, 1) for _ in range(n)]} for _ in range(8)]
    state = init(params, cfg, arith)
    params, state = ref_step(params, grads[0], state, cfg, arith)  # warm-up
    steps = 0
    start = time.perf_counter()
    elapsed = 0.0
    while steps < 3 or elapsed < min_time:
        params, state = ref_step(params, grads[steps % len(grads)], state, cfg, arith)
        steps += 1
        elapsed = time.perf_counter() - start
    return {
        "arithmetic": arith.name,
        "elements": n,
        "steps": steps,
        "seconds": elapsed,
        "element_steps_per_s": n * steps / elapsed,
    }


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 64, 1024, 16384])
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds per measurement")
    parser.add_argument("--out", default=str(HERE / "results" / "reference_speed.json"))
    args = parser.parse_args(argv)
    ariths: list[Arithmetic[Any]] = [
        BINARY64_ARITHMETIC,
        BINARY32_ARITHMETIC,
        arithmetic_for("bfloat16"),
        HighPrecision(50),
    ]
    rows = []
    for n in args.sizes:
        base = None
        for arith in ariths:
            row = measure(arith, n, args.min_time)
            if arith is BINARY64_ARITHMETIC:
                base = row["element_steps_per_s"]
            assert base is not None
            row["speed_vs_binary64"] = row["element_steps_per_s"] / base
            rows.append(row)
            print(
                f"{row['arithmetic']:>10} n={n:>6}: {row['element_steps_per_s']:>12,.0f} "
                f"element-steps/s  ({row['speed_vs_binary64']:.3f} x binary64)",
                flush=True,
            )
    summary: dict[str, dict[str, float]] = {}
    for arith in ariths:
        if arith is BINARY64_ARITHMETIC:
            continue
        ratios = [r["speed_vs_binary64"] for r in rows if r["arithmetic"] == arith.name]
        summary[f"{arith.name}/binary64"] = {"min": min(ratios), "max": max(ratios)}
    doc = {
        "benchmark": "reference_speed",
        "what": "element-steps per second of adamw_ref.step (torch profile, one parameter of n "
        "elements); speed_vs_binary64 = throughput / binary64 throughput at the same n",
        "command": " ".join([Path(sys.executable).name, *sys.argv])
        if argv is None
        else "reference_speed.main(" + repr(argv) + ")",
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "adamw_ref_version": adamw_ref.__version__,
        "machine": machine(),
        "min_time_s": args.min_time,
        "results": rows,
        "ratios": summary,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
