"""Matched CPU vs GPU: compare two reports' saved trajectories case by case (``cpu_vs_gpu``).

Both runs use the same scenarios, seeds and recorded gradients; a pair is matched when the ids
agree after replacing the device. The tolerance is ``cpu_vs_gpu`` for the dtype (both sides
round: two-sided count), scaled by the binary64 reference trajectory of the case.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conformance import compare as cmp
from conformance import diagnose as dg
from conformance import tolerance
from conformance.execute import base_config
from conformance.report import schema as rp
from conformance.scenarios import get as get_scenario
from conformance.worker import load_trajectory, traj_path


def compare_reports(cpu_dir: Path, gpu_dir: Path) -> list[dict[str, Any]]:
    """``cpu_vs_gpu`` case rows for every case present (with trajectories) in both runs."""
    from adamw_ref import PROFILES

    cpu, gpu = rp.load(cpu_dir), rp.load(gpu_dir)
    gpu_by = {c["id"].replace("-cuda-", "-cpu-", 1): c for c in gpu["cases"]}
    rows: list[dict[str, Any]] = []
    for c in cpu["cases"]:
        g = gpu_by.get(c["id"])
        if g is None or c["device"] != "cpu" or c["verdict"] in ("error", "skipped"):
            continue
        pa, pb = traj_path(Path(cpu_dir) / "traj", c["id"]), traj_path(Path(gpu_dir) / "traj", g["id"])
        row = {
            **c,
            "id": c["id"].replace("-cpu-", "-cpu_vs_cuda-", 1),
            "mode": "cpu_vs_gpu",
            "device": "cpu_vs_cuda",
            "diagnosis": None,
            "acceptable_flag": None,
            "repro": f"adamw-conformance compare {cpu_dir} {gpu_dir}",
        }
        if not pa.exists() or not pb.exists():
            rows.append({**row, "verdict": "skipped", "error": "trajectory file missing"})
            continue
        sc = get_scenario(c["scenario"])
        base = (
            PROFILES[c["profile"]].config if c["profile"] in PROFILES else base_config_from_name(c["adapter"])
        )
        cfg = sc.config(base)
        p0, grads = sc.inputs(int(c["seed"]))
        ref = dg.reference_points(cfg, p0, grads, c["dtype"])
        spec = tolerance.spec_for(c["dtype"], "cuda", "cpu_vs_gpu")
        bounds = tolerance.step_bounds(cfg, ref, grads, spec, c["mode"])
        res = cmp.compare(load_trajectory(pa), load_trajectory(pb), bounds, c["dtype"])
        exact = all(s == 0 for s in res.series_err)
        verdict = "exact" if exact else ("within_bound" if res.max_ratio <= 1 else "divergent")
        rows.append(
            {
                **row,
                "verdict": verdict,
                "error": None,
                "metrics": res.metrics,
                "first_divergence": res.first_divergence,
                "series": {"step": res.series_step, "err": res.series_err},
                "bound": {
                    "kind": spec.kind,
                    "dtype": c["dtype"],
                    "device": "cuda",
                    "c_step": spec.c_step,
                    "unit_roundoff": spec.unit_roundoff,
                    "max_ratio": res.max_ratio,
                },
            }
        )
    return rows


def base_config_from_name(adapter: str) -> Any:
    from adapters.registry import load_adapter

    return base_config(load_adapter(adapter))[1]
