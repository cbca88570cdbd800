"""Planted single-knob bugs through the whole suite: how many are flagged, how many named right.

For every alternative value of every knob and every flag (:data:`PLANTS`) an implementation
claims profile torch but computes with that one change. It runs every scenario of the catalogue
(``--scenarios``: the short ones, default and full), free-running, in float64 and float32, on
``--seeds`` seeds. Per (plant, dtype, seed):

* **flagged**: at least one case is ``divergent`` (not ``within_bound``/``exact``, not
  ``acceptable``);
* **named**: at least one divergent case is explained by a candidate that computes the planted
  algorithm on that case's data (same :func:`conformance.diagnose.effective_key`), and no
  divergent case is explained by a candidate that does not (a wrong name).

The honest implementation runs the same scenarios on ``--honest-seeds`` seeds: any case that is
not ``exact``/``within_bound`` is a false alarm. For the choice of ``CLOSEST_FACTOR`` the script
also records, over all divergent cases, the largest factor by which an *unrelated* candidate (one
whose changes act on another part of the update, :data:`GROUPS`, and that does not explain the
trajectory) lowers the bound ratio.

Two ways to plant (``--via``): ``reference`` (``adapters.reference.adapter.planted_adapter``: the
spec with the knob changed) and ``numpy`` (the small numpy AdamW classes of
``tests/conformance/planted_numpy.py``, loaded through the generic ``numpy:`` wrapper; plants
that need a schedule, groups or a flag the wrapper lacks are skipped there)::

    .venv/bin/python benchmarks/identifiability.py --jobs 2              # results/identifiability.json
    .venv/bin/python benchmarks/identifiability.py --seeds 0 --honest-seeds 0-1 --out /tmp/x.json
    .venv/bin/python benchmarks/identifiability.py --markdown results/identifiability.json
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: (label, field, value): every knob value and flag that differs from the torch profile.
PLANTS: list[tuple[str, str, Any]] = [
    ("eps_placement=before_bias_correction", "eps_placement", "before_bias_correction"),
    ("decay_scaling=schedule_multiplier", "decay_scaling", "schedule_multiplier"),
    ("decay_scaling=unscaled", "decay_scaling", "unscaled"),
    ("decay_form=proximal", "decay_form", "proximal"),
    ("decay_form=added_to_update", "decay_form", "added_to_update"),
    ("decay_form=coupled_l2", "decay_form", "coupled_l2"),
    ("decay_form=none", "decay_form", "none"),
    ("decay_timing=after_step", "decay_timing", "after_step"),
    ("bias_correction=false", "bias_correction", False),
    ("amsgrad_mode=bias_corrected_v", "amsgrad_mode", "bias_corrected_v"),
    ("schedule_count=post_increment", "schedule_count", "post_increment"),
    ("step_count_scope=global", "step_count_scope", "global"),
    ("bias_correction_offset=1", "bias_correction_offset", 1),
    ("bias_correction_offset=2", "bias_correction_offset", 2),
    ("maximize=true", "maximize", True),
    ("amsgrad=true", "amsgrad", True),
    ("nesterov=true", "nesterov", True),
    ("eps_root=1e-8", "eps_root", 1e-8),
]
#: Plants equal to the claimed profile in exact arithmetic: flagging them would be a false alarm.
ROUNDING_ONLY = {"decay_form=added_to_update"}
DTYPES = ("float64", "float32")
#: Verdicts that are no alarm (a skipped case: the wrapper cannot express the scenario).
_PASS = ("exact", "within_bound", "skipped")


def _range(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b or a) + 1))
    return out


def scenario_ids() -> list[str]:
    from conformance.scenarios import SCENARIOS

    return [s.id for s in SCENARIOS if "long" not in s.tags and set(s.dtypes) & set(DTYPES)]


def _adapter(via: str, label: str | None) -> Any:
    if label is None:
        if via == "numpy":
            from conformance.execute import load

            return load("numpy:tests.conformance.planted_numpy.Honest")
        from adapters.reference.adapter import ReferenceAdapter

        return ReferenceAdapter(name="honest")
    field_, value = next((f, v) for lab, f, v in PLANTS if lab == label)
    if via == "numpy":
        from conformance.execute import load
        from tests.conformance.planted_numpy import class_name

        return load(f"numpy:tests.conformance.planted_numpy.{class_name(field_, value)}")
    from adapters.reference.adapter import planted_adapter

    return planted_adapter(field_, value)


#: Which part of the update each field acts on: a candidate of another group is unrelated.
GROUPS: dict[str, str] = {
    "decay_form": "decay",
    "decay_scaling": "decay",
    "decay_timing": "decay",
    "weight_decay": "decay",
    "schedule_count": "schedule",
    "bias_correction": "bias correction",
    "bias_correction_offset": "bias correction",
    "step_count_scope": "bias correction",
    "eps_placement": "eps",
    "eps_root": "eps",
    "eps": "eps",
    "amsgrad": "second moment",
    "amsgrad_mode": "second moment",
    "maximize": "gradient",
    "nesterov": "first moment",
}


def _groups(changes: Any) -> set[str]:
    return {GROUPS.get(k, k) for k in changes} or {"precision"}


def _named_right(diag: dict[str, Any], planted: Any, cfg: Any, frozen: bool, names: list[str]) -> bool:
    from conformance import diagnose as dg

    if diag.get("roles"):
        return False
    c = dg.apply(cfg, diag.get("changes") or {})
    return (
        c is not None
        and planted is not None
        and dg.effective_key(c, frozen, names) == dg.effective_key(planted, frozen, names)
    )


def run_one(job: tuple[str, str | None, str, int, list[str]]) -> dict[str, Any]:
    """One (plant, dtype, seed) over the scenarios: the verdicts and diagnoses."""
    import numpy as np

    from adamw_ref import AdamWConfig
    from conformance import diagnose as dg
    from conformance import tolerance
    from conformance.execute import CaseSpec, Executor, base_config
    from conformance.scenarios import get

    np.seterr(all="ignore")
    via, label, dtype, seed, scen = job
    ad = _adapter(via, label)
    ex = Executor(ad, diagnose=False)
    impl = ad.info.implementations[0]
    plant = next(((f, v) for lab, f, v in PLANTS if lab == label), None)
    cases: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for sid in scen:
        sc = get(sid)
        if dtype not in sc.dtypes:
            continue
        c = CaseSpec("bench", impl, "cpu", dtype, sid, "free", seed)
        case = ex.run(c)
        row: dict[str, Any] = {
            "scenario": sid,
            "verdict": case["verdict"],
            "ratio": case["bound"].get("max_ratio"),
        }
        if case["verdict"] == "divergent" and ex.last_trajectory is not None:
            _, base = base_config(ad)
            cfg: AdamWConfig = sc.config(base)
            p0, grads = sc.inputs(seed)
            spec = tolerance.spec_for(dtype, "cpu", "ref_vs_impl")
            diag, search = dg.diagnose_search(cfg, p0, grads, ex.last_trajectory, dtype, spec)
            if dg.acceptable_flag(diag, cfg):
                row["verdict"] = "acceptable"
            row["explained_by"] = diag["explained_by"]
            row["detail"] = diag["detail"]
            if plant is not None:
                planted = dg.apply(cfg, {plant[0]: plant[1]})
                names = list(p0)
                frozen = dg.has_frozen(grads)
                # right: the planted algorithm is named, or listed as equally consistent (a tie
                # among the simplest explanations: the two compute the same numbers here)
                expl = search.explaining()
                ties = [x for x in expl if x.cand.size == expl[0].cand.size] if expl else []
                row["right"] = any(
                    _named_right(
                        {"changes": dict(x.cand.changes), "roles": x.cand.roles}, planted, cfg, frozen, names
                    )
                    for x in ties
                )
                row["named_first"] = bool(diag["explained_by"]) and _named_right(
                    diag, planted, cfg, frozen, names
                )
                # the best candidate that neither computes the planted algorithm nor explains the
                # trajectory: what "closest" would show if the right one were missing
                # (unrelated: none of its changes acts on the same part of the update, :data:`GROUPS`)
                wrong = [
                    x.score
                    for x in search.results
                    if not x.explains
                    and not (_groups(x.cand.changes) & _groups({plant[0]: plant[1]}))
                    and not _named_right(
                        {"changes": dict(x.cand.changes), "roles": x.cand.roles}, planted, cfg, frozen, names
                    )
                ]
                best_wrong = min(wrong, default=math.inf)
                row["wrong_factor"] = search.base / best_wrong if best_wrong > 0 else math.inf
        cases.append(row)
    div = [r for r in cases if r["verdict"] == "divergent"]
    out = {
        "plant": label,
        "dtype": dtype,
        "seed": seed,
        "cases": cases,
        "flagged": bool(div),
        "named": bool(div)
        and any(r.get("right") for r in div)
        and not any(r.get("explained_by") and not r.get("right") for r in div),
        "false_alarm": label is None and any(r["verdict"] not in _PASS for r in cases),
        "seconds": round(time.perf_counter() - t0, 2),
        "n_cases": len(cases),
    }
    return out


def compact(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per run its flags and counts; cases only where something went wrong (a false alarm, a
    divergent case not named right), with the diagnosis."""
    out = []
    for r in results:
        div = [c for c in r["cases"] if c["verdict"] not in _PASS]
        bad = [c for c in div if r["plant"] is None or not c.get("right", False)]
        out.append(
            {**{k: v for k, v in r.items() if k != "cases"}, "divergent_cases": len(div), "cases": bad}
        )
    return out


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    plants: dict[str, dict[str, Any]] = {}
    for r in results:
        if r["plant"] is None:
            continue
        p = plants.setdefault(r["plant"], {"runs": 0, "flagged": 0, "named": 0, "by_dtype": {}})
        p["runs"] += 1
        p["flagged"] += r["flagged"]
        p["named"] += r["named"]
        d = p["by_dtype"].setdefault(r["dtype"], {"runs": 0, "flagged": 0, "named": 0})
        d["runs"] += 1
        d["flagged"] += r["flagged"]
        d["named"] += r["named"]
    honest = [r for r in results if r["plant"] is None]
    real = {k: v for k, v in plants.items() if k not in ROUNDING_ONLY}
    runs = sum(v["runs"] for v in real.values())
    wrong = [
        c["wrong_factor"]
        for r in results
        for c in r["cases"]
        if "wrong_factor" in c and math.isfinite(c["wrong_factor"])
    ]
    return {
        "plants": plants,
        "flagged_fraction": sum(v["flagged"] for v in real.values()) / max(runs, 1),
        "named_fraction": sum(v["named"] for v in real.values()) / max(runs, 1),
        "rounding_only_flagged": {k: plants[k]["flagged"] for k in ROUNDING_ONLY if k in plants},
        "honest_runs": len(honest),
        "honest_cases": sum(r.get("n_cases", len(r["cases"])) for r in honest),
        "false_alarms": [
            (r["dtype"], r["seed"], c["scenario"], c["verdict"], c["ratio"])
            for r in honest
            for c in r["cases"]
            if c["verdict"] not in _PASS
        ],
        "max_wrong_candidate_factor": max(wrong, default=0.0),
        "wrong_candidate_factor_p99": sorted(wrong)[int(0.99 * (len(wrong) - 1))] if wrong else 0.0,
    }


def markdown(data: dict[str, Any]) -> str:
    s = data["summary"]
    lines = [
        f"Command: `{data['command']}` ({data['via']} plants; scenarios: every short scenario of "
        f"the catalogue, {len(data['scenarios'])}; seeds {data['seeds']}; honest seeds "
        f"{data['honest_seeds']}; {data['seconds']:.0f} s on {data['machine']}).",
        "",
        "| planted change (claims torch) | float64 flagged | float64 named | float32 flagged | "
        "float32 named |",
        "|---|---|---|---|---|",
    ]
    for label, _, _ in PLANTS:
        p = s["plants"].get(label)
        if p is None:
            why = "not plantable via numpy" if data["via"] == "numpy" else "not run"
            lines.append(f"| `{label}` | {why} | | | |")
            continue
        cells = []
        for dt in DTYPES:
            d = p["by_dtype"].get(dt, {"runs": 0, "flagged": 0, "named": 0})
            cells += [f"{d['flagged']}/{d['runs']}", f"{d['named']}/{d['runs']}"]
        note = " (rounding only: must not be flagged)" if label in ROUNDING_ONLY else ""
        lines.append(f"| `{label}`{note} | " + " | ".join(cells) + " |")
    fa = s["false_alarms"]
    lines += [
        "",
        f"All plants but the rounding-only one: **{100 * s['flagged_fraction']:.1f} % flagged, "
        f"{100 * s['named_fraction']:.1f} % named right** (per plant, dtype and seed). Honest "
        f"implementation: {s['honest_cases']} cases on {s['honest_runs']} (dtype, seed) runs, "
        f"**{len(fa)} false alarm{'s' if len(fa) != 1 else ''}**. The largest factor by which an "
        f"unrelated candidate (one acting on another part of the update) lowered the bound ratio "
        f"of a divergent case: {s['max_wrong_candidate_factor']:.3g} (99th percentile "
        f"{s['wrong_candidate_factor_p99']:.3g}).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--via", choices=("reference", "numpy"), default="reference")
    ap.add_argument("--seeds", default="0-4")
    ap.add_argument("--honest-seeds", default="0-19")
    ap.add_argument("--dtypes", default=",".join(DTYPES))
    ap.add_argument("--plants", default=None, help="comma list of plant labels (default: all)")
    ap.add_argument("--scenarios", default=None, help="comma list (default: every short scenario)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "identifiability.json"))
    ap.add_argument("--markdown", metavar="JSON", help="print the table of an earlier result and exit")
    ns = ap.parse_args(argv)
    if ns.markdown:
        sys.stdout.write(markdown(json.loads(Path(ns.markdown).read_text())))
        return 0
    scen = ns.scenarios.split(",") if ns.scenarios else scenario_ids()
    labels: list[str | None] = [lab for lab, _, _ in PLANTS]
    if ns.plants:
        labels = [x for x in labels if x in ns.plants.split(",")]
    if ns.via == "numpy":
        from tests.conformance.planted_numpy import plantable

        labels = [lab for lab, f, v in PLANTS if lab in labels and plantable(f, v)]
    dtypes = ns.dtypes.split(",")
    jobs: list[tuple[str, str | None, str, int, list[str]]] = [
        (ns.via, lab, dt, seed, scen) for lab in labels for dt in dtypes for seed in _range(ns.seeds)
    ]
    jobs += [(ns.via, None, dt, seed, scen) for dt in dtypes for seed in _range(ns.honest_seeds)]
    t0 = time.perf_counter()
    if ns.jobs > 1:
        with multiprocessing.get_context("spawn").Pool(ns.jobs) as pool:
            results = pool.map(run_one, jobs, chunksize=1)
    else:
        results = [run_one(j) for j in jobs]
    argv_text = " ".join(argv if argv is not None else sys.argv[1:])
    data = {
        "command": f".venv/bin/python benchmarks/identifiability.py {argv_text}".strip(),
        "via": ns.via,
        "seeds": ns.seeds,
        "honest_seeds": ns.honest_seeds,
        "scenarios": scen,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "seconds": time.perf_counter() - t0,
        "summary": summarise(results),
        "results": compact(results),
    }
    Path(ns.out).parent.mkdir(parents=True, exist_ok=True)
    Path(ns.out).write_text(json.dumps(data, default=str) + "\n")
    sys.stdout.write(markdown(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
