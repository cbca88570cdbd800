"""State fidelity: save after ``N`` steps, load in a fresh process, continue ``M`` steps.

``python -m conformance.reliability.fidelity --out DIR`` writes ``state_fidelity.json`` and
``state_fidelity.md``. For every adapter and implementation, dtype and config variant
(:func:`conformance.reliability.fidelity_jobs.config_for`), one worker process primes the run
``N`` steps, saves the native state (``run.save``) and continues ``M`` steps; another worker
process, which never saw that run, creates a fresh optimizer with other initial parameters,
loads the file (``run.load``) and steps the same ``M`` gradients. Bit patterns are compared: the
state right after the load against the state at the save (parameters, ``m``, ``v``, ``v_max``,
the step count and the per-parameter counts where kept), then the parameters after every later
step and the final state against the uninterrupted run.

CPU only: this machine has no GPU, so saving on the CPU and loading on a GPU is not measured.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from conformance.reliability.common import md_code, run_jobs, versions, write_report
from conformance.reliability.fidelity_jobs import first_difference

N, M = 4, 4
VARIANTS = ("plain", "features")
DTYPES = ("float32", "bfloat16", "float64")  # float64 last: it switches JAX to x64 for the process

#: label -> (adapter spec, implementation, worker environment)
TARGETS: dict[str, tuple[str, str | None, dict[str, str]]] = {
    "torch forloop": ("torch", "forloop", {}),
    "torch foreach": ("torch", "foreach", {}),
    "torch fused": ("torch", "fused", {}),
    "torch:torch.optim.AdamW forloop": ("torch:torch.optim.AdamW", "forloop", {}),
    "torch:torch.optim.AdamW fused": ("torch:torch.optim.AdamW", "fused", {}),
    "optax jit": ("optax", "jit", {}),
    "optax nojit": ("optax", "nojit", {}),
    "keras tensorflow": ("keras-tensorflow", None, {"KERAS_BACKEND": "tensorflow"}),
    "keras jax": ("keras-jax", None, {"KERAS_BACKEND": "jax"}),
    "keras torch": ("keras-torch", None, {"KERAS_BACKEND": "torch"}),
    "mlx": ("mlx", None, {}),
    "reference": ("reference", None, {}),
}


def _dtypes(adapter: str) -> list[str]:
    from adapters import load_adapter

    have = set(load_adapter(adapter).info.dtypes)
    return [d for d in DTYPES if d in have]


def collect(
    targets: Sequence[str] | None = None,
    dtypes: Sequence[str] | None = None,
    variants: Sequence[str] | None = None,
) -> dict[str, Any]:
    labels = list(TARGETS if targets is None else targets)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="adamw-fidelity-") as tmp:
        for label in labels:
            adapter, impl, env = TARGETS[label]
            dts = [d for d in _dtypes(adapter) if dtypes is None or d in dtypes]
            cases = [(d, v) for d in dts for v in (variants or VARIANTS)]
            jobs = [
                {
                    "kind": "prime",
                    "adapter": adapter,
                    "implementation": impl,
                    "dtype": d,
                    "variant": v,
                    "n": N,
                    "m": M,
                    "path": str(Path(tmp) / f"{label.replace(' ', '_').replace(':', '_')}-{d}-{v}.state"),
                }
                for d, v in cases
            ]
            primed = run_jobs(jobs, env=env, timeout=900)
            resume_jobs = []
            for job, res in zip(jobs, primed, strict=True):
                if "config" in res:
                    resume_jobs.append(
                        {**job, "kind": "resume", "config": res["config"], "grads": res["grads"]}
                    )
            resumed = iter(run_jobs(resume_jobs, env=env, timeout=900)) if resume_jobs else iter(())
            for job, res in zip(jobs, primed, strict=True):
                back = next(resumed) if "config" in res else None
                rows.append(compare(label, job, res, back))
    return {"n": N, "m": M, "rows": rows}


def compare(label: str, job: Mapping[str, Any], primed: Mapping[str, Any], resumed: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "target": label,
        "adapter": job["adapter"],
        "implementation": job["implementation"],
        "dtype": job["dtype"],
        "variant": job["variant"],
    }
    if "config" not in primed:
        row["failure"] = "prime: " + _failure(primed)
        return row
    row["features"] = primed["features"]
    if not isinstance(resumed, Mapping) or "loaded" not in resumed:
        row["failure"] = "resume: " + _failure(resumed or {})
        return row
    saved, loaded = dict(primed["saved"]), dict(resumed["loaded"])
    row["state_restored"] = first_difference(saved, loaded, "loaded") is None
    row["restore_difference"] = first_difference(saved, loaded, "loaded")
    row["continuation_bit_exact"] = first_difference(primed["after"], resumed["after"], "after") is None
    row["continuation_difference"] = first_difference(primed["after"], resumed["after"], "after")
    row["final_state_bit_exact"] = first_difference(primed["final"], resumed["final"], "final") is None
    row["final_difference"] = first_difference(primed["final"], resumed["final"], "final")
    row["bit_exact"] = bool(
        row["state_restored"] and row["continuation_bit_exact"] and row["final_state_bit_exact"]
    )
    return row


def _failure(res: Mapping[str, Any]) -> str:
    if "crash" in res:
        return f"crash: {res['crash']} {str(res.get('stderr', ''))[-200:]}"
    return f"{res.get('error', 'error')}: {str(res.get('message', ''))[:300]}"


def to_markdown(doc: Mapping[str, Any]) -> str:
    lines = [
        "# State fidelity: save, load in a fresh process, continue",
        "",
        "Generated by `python -m conformance.reliability.fidelity --out docs/reports/reliability` "
        "(raw results in `state_fidelity.json`); "
        + ", ".join(f"`{a}` {b}" for a, b in sorted(doc.get("versions", {}).items()))
        + ".",
        "",
        f"Each run is primed {doc['n']} steps and saved with its adapter's `save` (the framework's "
        "native state, no pickle); a fresh worker process creates a new optimizer of the same "
        f"config with *other* initial parameters, `load`s the file and steps the same {doc['m']} "
        "gradients. Parameters `w` (3, 4), `b` (5,), a 0-d `s` and a zero-size `z`. Compared bit "
        "for bit: the state right after the load against the state at the save (parameters, m, "
        "v, v_max, step, per-parameter counts), the parameters after each later step, and the "
        "final state. `plain`: the adapter's profile, lr = 0.01, weight_decay = 0.1. `features`: "
        "plus what the adapter supports of a warmup-cosine lr schedule, AMSGrad, a decay-free "
        "group for `b`, and `b` frozen at step 2.",
        "",
        "| implementation | dtype | config | features | state restored | continuation | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        if "failure" in r:
            lines.append(
                f"| {r['target']} | {r['dtype']} | {r['variant']} | | {md_code(r['failure'])} | | failed |"
            )
            continue
        restored = "bit-exact" if r["state_restored"] else md_code(str(r["restore_difference"]))
        cont = (
            "bit-exact"
            if r["continuation_bit_exact"] and r["final_state_bit_exact"]
            else md_code(str(r["continuation_difference"] or r["final_difference"]))
        )
        lines.append(
            f"| {r['target']} | {r['dtype']} | {r['variant']} | {', '.join(r['features']) or '-'} | "
            f"{restored} | {cont} | {'bit-exact' if r['bit_exact'] else 'DIFFERS'} |"
        )
    bad = [r for r in doc["rows"] if not r.get("bit_exact")]
    lines += ["", "## Summary", ""]
    total = len(doc["rows"])
    lines.append(f"{total - len(bad)} of {total} cases resume bit-exactly in a fresh process.")
    for r in bad:
        why = r.get("failure") or r.get("restore_difference") or r.get("continuation_difference") or ""
        lines.append(f"* {r['target']} {r['dtype']} {r['variant']}: {md_code(str(why))}")
    lines += [
        "",
        "CPU to GPU (save on the CPU, load on a GPU): not measured, this machine has no GPU.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m conformance.reliability.fidelity", description=__doc__)
    p.add_argument("--out", type=Path, required=True, help="directory for state_fidelity.json/.md")
    p.add_argument("--targets", nargs="*", help=f"a subset of {list(TARGETS)}")
    p.add_argument("--dtypes", nargs="*", help=f"a subset of {list(DTYPES)}")
    p.add_argument("--variants", nargs="*", help=f"a subset of {list(VARIANTS)}")
    a = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    doc = {"report": "state_fidelity", "versions": versions(), **collect(a.targets, a.dtypes, a.variants)}
    js, md = write_report(a.out, "state_fidelity", doc, to_markdown(doc))
    print(f"wrote {js} and {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
