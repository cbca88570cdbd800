"""Wall time of ``adamw-conformance run`` as a user sees it: the ``--quick`` tier and the default run.

Each run is a fresh ``adamw-conformance run --out DIR`` subprocess (every installed built-in
adapter, framework imports, the workers, the report and its rendering: terminal summary, PNG
plots, HTML), ``--repeat`` times per tier; then ``adamw-conformance report DIR`` re-renders the
last report alone, which times the rendering by itself. Records min/median wall time, the number
of cases, each adapter worker's summed case time (from the report), the machine and its load.
Writes ``benchmarks/results/default_run.json``::

    .venv/bin/python benchmarks/default_run.py [--tiers quick,default] [--repeat 3] [--out FILE]

Targets (issue 14): ``--quick`` under 15 s, the default run under 30 s on the 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"quick": 15.0, "default": 30.0}
TIER_ARGS = {"quick": ["--quick"], "default": []}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "conformance.cli", *args]


def one_run(tier: str, out_dir: Path) -> tuple[float, dict[str, Any]]:
    cmd = _cli("run", *TIER_ARGS[tier], "--out", str(out_dir), "--no-progress")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):  # 1 = divergences found, a result, not a failure
        raise SystemExit(f"{tier} run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    report: dict[str, Any] = json.loads((out_dir / "report.json").read_text())
    return wall, report


def render_time(out_dir: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(_cli("report", str(out_dir)), cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"report failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def import_time() -> float:
    """Seconds for a fresh interpreter to import the CLI (what every run pays first)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import conformance.cli"], cwd=ROOT, check=True)
    return time.perf_counter() - t0


def tier(name: str, repeat: int) -> dict[str, Any]:
    walls: list[float] = []
    report: dict[str, Any] = {}
    render = 0.0
    for i in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            wall, report = one_run(name, Path(tmp))
            if i == repeat - 1:
                render = render_time(Path(tmp))
        walls.append(wall)
        print(f"{name} run {i + 1}/{repeat}: {wall:.1f} s", flush=True)
    cases = report.get("cases", [])
    per_adapter: dict[str, float] = defaultdict(float)
    for c in cases:
        per_adapter[str(c["adapter"])] += float(c.get("duration_s") or 0.0)
    return {
        "command": f"adamw-conformance run {' '.join(TIER_ARGS[name])} --out DIR --no-progress".replace(
            "  ", " "
        ),
        "target_s": TARGETS[name],
        "wall_s": [round(w, 2) for w in walls],
        "wall_min_s": round(min(walls), 2),
        "wall_median_s": round(statistics.median(walls), 2),
        "meets_target": min(walls) < TARGETS[name],
        "rerender_s": round(render, 2),
        "cases": len(cases),
        "case_seconds_per_adapter": {k: round(v, 2) for k, v in sorted(per_adapter.items())},
        "case_seconds_total": round(sum(per_adapter.values()), 2),
        "frameworks": report.get("envelope", {}).get("frameworks", {}),
    }


def machine() -> dict[str, Any]:
    cpu = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiers", default="quick,default", help="comma list of quick, default")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "default_run.json"))
    ns = ap.parse_args()
    names = [t.strip() for t in ns.tiers.split(",") if t.strip()]
    load_start = os.getloadavg()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    imports = import_time()
    results = {name: tier(name, ns.repeat) for name in names}
    load_end = os.getloadavg()
    result = {
        "benchmark": "default_run",
        "what": "wall time of `adamw-conformance run` (every installed built-in adapter, default "
        "scenarios), fresh processes, framework imports, workers, report and rendering "
        "(terminal, PNG, HTML) included; rerender_s = `adamw-conformance report DIR` alone",
        "command": f"python benchmarks/default_run.py --tiers {','.join(names)} --repeat {ns.repeat}",
        "date_utc": started,
        "machine": machine(),
        "load_average": {"start": [round(x, 2) for x in load_start], "end": [round(x, 2) for x in load_end]},
        "cli_import_s": round(imports, 2),
        "oracle_backend": os.environ.get("ADAMW_REF_ORACLE", "auto"),
        "tiers": results,
    }
    Path(ns.out).write_text(json.dumps(result, indent=2) + "\n")
    summary = {
        k: {f: v[f] for f in ("wall_min_s", "wall_median_s", "rerender_s", "cases")}
        for k, v in results.items()
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
