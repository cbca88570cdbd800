"""Cross-framework state transfer (:mod:`adapters.transfer`), checked against the reference.

``python -m conformance.reliability.transfer_check --out DIR`` writes ``transfer.json`` and
``transfer.md``. A chain trains a few steps in each framework in turn, moving the canonical state
between them (:func:`adapters.transfer.run_chain`; one worker process per chain, since Keras
fixes its backend per process). Each segment is then checked on its own: the binary64
reference starts from the state the segment started from (after the move) with the segment's
config, and the segment's parameters must lie within the suite's derived bound
(:func:`conformance.tolerance.step_bounds`, free-running, ``ref_vs_impl``) of it. The moves
themselves must be bit-exact (same dtype on both sides). Then the refusals: moves that
:func:`adapters.transfer.plan` must refuse, each with its reason.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from conformance.reliability.common import bits, from_bits, md_code, run_jobs, versions, write_report

#: label -> (chain, dtype, config changes on the first framework's profile, env)
CHAINS: dict[str, tuple[tuple[str, ...], str, dict[str, Any], dict[str, str]]] = {
    "torch -> optax -> keras-jax -> mlx -> torch": (
        ("torch", "optax", "keras-jax", "mlx", "torch"),
        "float32",
        {"lr": 1e-2, "weight_decay": 0.1},
        {"KERAS_BACKEND": "jax"},
    ),
    "torch (AMSGrad) -> keras-tensorflow -> reference": (
        ("torch", "keras-tensorflow", "reference"),
        "float32",
        {"lr": 1e-2, "weight_decay": 0.1, "amsgrad": True},
        {"KERAS_BACKEND": "tensorflow"},
    ),
    "optax -> torch -> optax": (
        ("optax", "torch", "optax"),
        "float64",
        {"lr": 1e-2, "weight_decay": 0.1},
        {},
    ),
}
STEPS = 6


def _enc(d: Mapping[str, Any] | None) -> Any:
    if d is None:
        return None
    return {n: {"shape": list(np.shape(a)), "bits": bits(a)} for n, a in d.items()}


def _dec(d: Any) -> dict[str, Any] | None:
    if d is None:
        return None
    return {n: from_bits(e["bits"], e["shape"]) for n, e in d.items()}


def chain_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """Worker side: run one chain, every segment's start point and trajectory as bit patterns."""
    from adamw_ref import get_profile
    from adapters import load_adapter
    from adapters.transfer import run_chain

    chain = list(job["chain"])
    cfg = get_profile(load_adapter(chain[0]).info.profile).config.replace(**job["changes"])
    segs = run_chain(chain, job["steps"], config=cfg, dtype=job["dtype"])
    # the same gradients without moving: the first framework all the way
    alone = load_adapter(chain[0]).create(cfg, segs[0].start_params, dtype=job["dtype"])
    for s in segs:
        for g in s.grads:
            alone.step(g)
    stayed = alone.params()
    alone.close()
    return {
        "stayed": _enc(stayed),
        "segments": [
            {
                "adapter": s.adapter,
                "config": s.config.to_json(),
                "start_params": _enc(s.start_params),
                "start": {
                    "step": s.start.step,
                    "m": _enc(s.start.m),
                    "v": _enc(s.start.v),
                    "v_max": _enc(s.start.v_max),
                    "param_steps": s.start.param_steps,
                },
                "grads": [_enc(g) for g in s.grads],
                "params": [_enc(p) for p in s.params],
                "state_bit_exact": s.state_bit_exact,
                "residuals": s.residuals,
            }
            for s in segs
        ],
    }


#: (label, source adapter, source config changes on its profile, how to prime, target adapter)
REFUSALS: tuple[tuple[str, str, dict[str, Any], str, str], ...] = (
    ("a frozen parameter (per-parameter counts differ) into a global count", "torch", {}, "frozen", "optax"),
    ("AMSGrad over raw v into AMSGrad over v-hat", "torch", {"amsgrad": True}, "plain", "optax"),
    ("AMSGrad into a framework without it", "torch", {"amsgrad": True}, "plain", "mlx"),
    ("maximize into a framework without it", "torch", {"maximize": True}, "plain", "keras-torch"),
    ("no bias correction into a framework that always corrects", "mlx", {}, "plain", "torch"),
    ("Nesterov into a framework without it", "optax", {"nesterov": True}, "plain", "torch"),
    (
        "a warmup schedule (translations are for constant schedules)",
        "torch",
        {"schedule": True},
        "plain",
        "optax",
    ),
)


def refusal_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """Worker side: try each move of :data:`REFUSALS`; what :func:`adapters.transfer.transfer` said."""
    from adamw_ref import WarmupCosine, get_profile
    from adapters import load_adapter
    from adapters.transfer import TransferRefused, demo_problem, transfer

    out = []
    p0, grads = demo_problem(3)
    for label, source, changes, prime, target in REFUSALS:
        ch = dict(changes)
        if ch.pop("schedule", False):
            ch["lr_schedule"] = WarmupCosine(warmup_steps=2, total_steps=10)
        cfg = get_profile(load_adapter(source).info.profile).config.replace(lr=1e-2, **ch)
        run = load_adapter(source).create(cfg, p0, dtype="float32")
        for i, g in enumerate(grads):
            run.step({**g, "b": None} if prime == "frozen" and i == 1 else g)
        try:
            moved = transfer(run, target, source=source, config=cfg, dtype="float32")
            moved.run.close()
            out.append({"label": label, "source": source, "target": target, "refused": False})
        except TransferRefused as exc:
            out.append(
                {
                    "label": label,
                    "source": source,
                    "target": target,
                    "refused": True,
                    "what": exc.what,
                    "message": str(exc),
                }
            )
        finally:
            run.close()
    return {"refusals": out}


def check_segment(seg: Mapping[str, Any], dtype: str) -> dict[str, Any]:
    """The segment against the binary64 reference from its own start, within the derived bound."""
    from adamw_ref import AdamWConfig
    from adapters import CanonicalState, load_adapter
    from conformance.tolerance import RefPoint, spec_for, step_bounds

    cfg = AdamWConfig.from_json(seg["config"])
    p0 = _dec(seg["start_params"]) or {}
    st = seg["start"]
    start = CanonicalState(
        int(st["step"]), _dec(st["m"]) or {}, _dec(st["v"]) or {}, _dec(st["v_max"]), st["param_steps"]
    )
    grads = [_dec(g) or {} for g in seg["grads"]]
    got = [_dec(p) or {} for p in seg["params"]]
    ref = load_adapter("reference").create(cfg, p0, dtype="float64")
    ref.set_state(p0, start)
    points = [RefPoint(dict(p0), dict(start.m), dict(start.v), start.v_max, start.param_steps)]
    for g in grads:
        ref.step(g)
        s = ref.state()
        points.append(RefPoint(ref.params(), dict(s.m), dict(s.v), s.v_max, s.param_steps))
    ref.close()
    # the bound's step counts start at the segment's count: shift the config's offset by it
    bound_cfg = cfg.replace(bias_correction_offset=cfg.bias_correction_offset + int(start.step))
    bounds = step_bounds(bound_cfg, points, grads, spec_for(dtype), "free")
    worst, ratio = 0.0, 0.0
    for t, p in enumerate(got):
        for n, a in p.items():
            d = np.abs(np.asarray(a) - points[t + 1].params[n])
            if d.size:
                worst = max(worst, float(np.max(d)))
                with np.errstate(divide="ignore", invalid="ignore"):
                    r = np.where(d == 0, 0.0, d / bounds[t][n])
                ratio = max(ratio, float(np.max(r)))
    return {
        "adapter": seg["adapter"],
        "start_step": int(start.step),
        "state_bit_exact": bool(seg["state_bit_exact"]),
        "residuals": list(seg["residuals"]),
        "max_abs_vs_reference": worst,
        "bound_used": ratio,  # max |diff| / bound: <= 1 passes
        "within_bound": bool(ratio <= 1.0),
    }


def collect(chains: Sequence[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"steps": STEPS, "chains": [], "refusals": []}
    for label in chains or CHAINS:
        chain, dtype, changes, env = CHAINS[label]
        job = {"kind": "chain", "chain": list(chain), "dtype": dtype, "changes": changes, "steps": STEPS}
        res = run_jobs([job], env=env, timeout=900)[0]
        if "segments" not in res:
            out["chains"].append({"chain": label, "dtype": dtype, "failure": str(res)[:400]})
            continue
        segs = [check_segment(s, dtype) for s in res["segments"]]
        last = _dec(res["segments"][-1]["params"][-1]) or {}
        stayed = _dec(res["stayed"]) or {}
        drift = max(
            (float(np.max(np.abs(last[n] - stayed[n]))) for n in stayed if stayed[n].size), default=0.0
        )
        out["chains"].append(
            {"chain": label, "dtype": dtype, "changes": changes, "segments": segs, "drift_vs_staying": drift}
        )
    res = run_jobs([{"kind": "refusals"}], timeout=900)[0]
    out["refusals"] = res.get("refusals", [{"failure": str(res)[:400]}])
    return out


def to_markdown(doc: Mapping[str, Any]) -> str:
    lines = [
        "# Cross-framework state transfer, checked against the reference",
        "",
        "Generated by `python -m conformance.reliability.transfer_check --out "
        "docs/reports/reliability` (raw results in `transfer.json`); "
        + ", ".join(f"`{a}` {b}" for a, b in sorted(doc.get("versions", {}).items()))
        + ". The API and the command: docs/transfer.md.",
        "",
        f"Each chain trains {doc['steps']} steps per framework and moves the canonical state "
        "(`adapters.transfer.transfer`: parameters, m, v, v_max, counts) to the next, whose "
        "config is the translation of the previous one (`adamw-ref translate`). *Moved*: the "
        "target read back exactly what was written. *Vs reference*: the binary64 reference, "
        "started from the same point with the segment's config; *bound used*: the largest "
        "|difference| / derived bound (`conformance.tolerance.step_bounds`, free-running), "
        "which must be <= 1.",
        "",
    ]
    for ch in doc["chains"]:
        lines += [f"## {ch['chain']} ({ch['dtype']})", ""]
        if "failure" in ch:
            lines += [f"failed: {md_code(ch['failure'])}", ""]
            continue
        lines += [
            "| segment | starts at step | moved | max abs vs reference | bound used | verdict | "
            "residual from here on |",
            "|---|---|---|---|---|---|---|",
        ]
        for s in ch["segments"]:
            ok = s["state_bit_exact"] and s["within_bound"]
            moved = "bit-exact" if s["state_bit_exact"] else "ROUNDED"
            lines.append(
                f"| {s['adapter']} | {s['start_step']} | {moved} | "
                f"{s['max_abs_vs_reference']:.3g} | {s['bound_used']:.3g} | {'ok' if ok else 'FAILS'} | "
                f"{md_code('; '.join(r.split(';')[0] for r in s['residuals'])) or '-'} |"
            )
        lines += [
            "",
            "After the chain, the parameters differ from a run that stayed in "
            f"`{ch['segments'][0]['adapter']}` on the same gradients by at most "
            f"{ch['drift_vs_staying']:.3g}: each segment follows its own framework's algorithm "
            "(rounding, and Keras' eps-hat where it appears).",
            "",
        ]
    lines += ["## Refused moves", "", "| move | from | to | refused | reason |", "|---|---|---|---|---|"]
    for r in doc["refusals"]:
        if "failure" in r:
            lines.append(f"| failed | | | | {md_code(r['failure'])} |")
            continue
        lines.append(
            f"| {r['label']} | {r['source']} | {r['target']} | {'yes' if r['refused'] else 'NO'} | "
            f"{md_code(r.get('message', ''))} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m conformance.reliability.transfer_check", description=__doc__)
    p.add_argument("--out", type=Path, required=True, help="directory for transfer.json and transfer.md")
    p.add_argument("--chains", nargs="*", help=f"a subset of {list(CHAINS)}")
    a = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    doc = {"report": "transfer", "versions": versions(), **collect(a.chains)}
    js, md = write_report(a.out, "transfer", doc, to_markdown(doc))
    print(f"wrote {js} and {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
