"""Wall time of the default ``adamw-conformance run`` on this machine (target: < 60 s on 2 cores).

Runs the command ``--repeat`` times as a subprocess (fresh interpreters, so framework import
time is counted, as a user sees it), and records min/median wall time, the number of cases and,
from the last report, each adapter worker's summed case time. Writes
``benchmarks/results/default_run.json``::

    .venv/bin/python benchmarks/default_run.py [--repeat 3] [--out FILE]
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

ROOT = Path(__file__).resolve().parents[1]


def one_run(out_dir: Path) -> tuple[float, dict[str, object]]:
    cmd = [
        sys.executable,
        "-m",
        "conformance.cli",
        "run",
        "--out",
        str(out_dir),
        "--no-progress",
        "--no-render",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):  # 1 = divergences found, a result, not a failure
        raise SystemExit(f"run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    report: dict[str, object] = json.loads((out_dir / "report.json").read_text())
    return wall, report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "default_run.json"))
    ns = ap.parse_args()
    walls: list[float] = []
    report: dict[str, object] = {}
    for i in range(ns.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            wall, report = one_run(Path(tmp))
        walls.append(wall)
        print(f"run {i + 1}/{ns.repeat}: {wall:.1f} s", flush=True)
    cases = report.get("cases", [])
    assert isinstance(cases, list)
    per_adapter: dict[str, float] = defaultdict(float)
    for c in cases:
        per_adapter[f"{c['adapter']}"] += float(c.get("duration_s") or 0.0)
    result = {
        "benchmark": "default_run",
        "what": "wall time of `adamw-conformance run` (default adapters and scenarios), "
        "fresh processes, framework imports included; worker case time per adapter "
        "from the last run",
        "command": "python benchmarks/default_run.py --repeat " + str(ns.repeat),
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
        },
        "target_s": 60.0,
        "wall_s": [round(w, 2) for w in walls],
        "wall_min_s": round(min(walls), 2),
        "wall_median_s": round(statistics.median(walls), 2),
        "cases": len(cases),
        "frameworks": report.get("envelope", {}).get("frameworks", {}),  # type: ignore[union-attr]
        "case_seconds_per_adapter": {k: round(v, 2) for k, v in sorted(per_adapter.items())},
    }
    Path(ns.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("wall_s", "wall_min_s", "wall_median_s", "cases")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
