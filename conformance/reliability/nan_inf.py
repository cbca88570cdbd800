r"""NaN and Inf behaviour per implementation, against the specification's rule.

``python -m conformance.reliability.nan_inf --out DIR`` writes ``nan_inf.json`` and ``nan_inf.md``.

**Propagation.** A parameter of four elements, six steps of fixed gradients; at step ``k = 3`` the
gradient of element 0 is NaN, +inf or -inf, then clean again. Every implementation runs through
its adapter (:func:`adapters.load_adapter`; the adapters pass non-finite gradients through
untouched) in float32 with its own profile (``lr = weight_decay = 1e-2``), and so does the
reference (the rule, docs/spec.md section 6: IEEE 754 per element, no skipping), with the same
profile. Compared, step by step from ``k``: the class (NaN, +inf, -inf, finite) of the poisoned
element's parameter, ``m`` and ``v``; and the clean elements, which must equal, bit for bit, those
of the same implementation run on the clean stream (nothing leaks across elements).

**Skipped steps (AMP).** The frameworks' own skip of a non-finite step, called natively:
``torch.amp.GradScaler("cpu")`` (for-loop, foreach, fused), ``optax.apply_if_finite``,
``keras.optimizers.LossScaleOptimizer`` (each backend). Expected: the step never happened:
parameters, ``m``, ``v`` bit-identical to the step before, the bias-correction count not
advanced, and afterwards the trajectory of the reference run on the stream without that step
(reported in float32 ulps). MLX has no such mechanism.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from conformance.reliability.common import from_bits, kind, md_code, run_jobs, versions, write_report

STEPS, K = 6, 3
POISONS = ("nan", "+inf", "-inf")
HYPER = {"lr": 1e-2, "weight_decay": 1e-2}
DTYPE = "float32"

#: label -> (adapter, implementation, worker environment)
IMPLEMENTATIONS: dict[str, tuple[str, str | None, dict[str, str]]] = {
    "torch forloop": ("torch", "forloop", {}),
    "torch foreach": ("torch", "foreach", {}),
    "torch fused": ("torch", "fused", {}),
    "optax jit": ("optax", "jit", {}),
    "keras tensorflow": ("keras-tensorflow", None, {"KERAS_BACKEND": "tensorflow"}),
    "keras jax": ("keras-jax", None, {"KERAS_BACKEND": "jax"}),
    "keras torch": ("keras-torch", None, {"KERAS_BACKEND": "torch"}),
    "mlx": ("mlx", None, {}),
    "reference": ("reference", None, {}),
}

#: label -> (framework, implementation, environment) of the native skipped-step mechanisms
AMP: dict[str, tuple[str, str | None, dict[str, str]]] = {
    "torch forloop + GradScaler": ("torch", "forloop", {}),
    "torch foreach + GradScaler": ("torch", "foreach", {}),
    "torch fused + GradScaler": ("torch", "fused", {}),
    "optax apply_if_finite": ("optax", None, {}),
    "keras tensorflow LossScaleOptimizer": ("keras", None, {"KERAS_BACKEND": "tensorflow"}),
    "keras jax LossScaleOptimizer": ("keras", None, {"KERAS_BACKEND": "jax"}),
    "keras torch LossScaleOptimizer": ("keras", None, {"KERAS_BACKEND": "torch"}),
}
#: the profile (and so the reference config) of each AMP framework
AMP_PROFILE = {"torch": "torch", "optax": "optax", "keras": "keras3"}


def profile_of(adapter: str) -> str:
    from adapters import load_adapter

    return str(load_adapter(adapter).info.profile)


def config_json(profile: str) -> dict[str, Any]:
    from adamw_ref import get_profile

    out: dict[str, Any] = get_profile(profile).config.replace(**HYPER).to_json()
    return out


def _run(groups: Mapping[tuple[str, ...], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Jobs grouped by worker environment (a sorted tuple of KEY=VALUE), results in job order."""
    out: list[dict[str, Any]] = []
    for env_key, jobs in groups.items():
        env = dict(item.split("=", 1) for item in env_key)
        for job, res in zip(jobs, run_jobs(jobs, env=env, timeout=900), strict=True):
            out.append({"job": job, "result": res})
    return out


def _env_key(env: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(sorted(f"{k}={v}" for k, v in env.items()))


def collect(implementations: Sequence[str] | None = None, amp: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the propagation and AMP cases; the comparisons in ``propagation`` and ``amp``."""
    impls = list(IMPLEMENTATIONS if implementations is None else implementations)
    amps = list(AMP if amp is None else amp)
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    profiles: dict[str, str] = {}
    for label in impls:
        adapter, impl, env = IMPLEMENTATIONS[label]
        profiles[label] = profile_of(adapter)
        cfg = config_json(profiles[label])
        for poison in (None, *POISONS):
            groups.setdefault(_env_key(env), []).append(
                {
                    "kind": "propagation",
                    "label": label,
                    "adapter": adapter,
                    "implementation": impl,
                    "config": cfg,
                    "dtype": DTYPE,
                    "steps": STEPS,
                    "k": K,
                    "poison": poison,
                }
            )
    ref_profiles = sorted({*profiles.values(), *(AMP_PROFILE[AMP[a][0]] for a in amps)})
    for prof in ref_profiles:
        base = {"kind": "propagation", "adapter": "reference", "config": config_json(prof), "dtype": DTYPE}
        for poison in POISONS:
            groups.setdefault((), []).append(
                {**base, "label": f"rule[{prof}]", "steps": STEPS, "k": K, "poison": poison}
            )
        groups.setdefault((), []).append(
            {**base, "label": f"dropped[{prof}]", "steps": STEPS, "k": K, "poison": "nan", "drop": True}
        )
    for label in amps:
        fw, impl, env = AMP[label]
        hyper = {**{k: v for k, v in config_json(AMP_PROFILE[fw]).items() if k in ("beta1", "beta2", "eps")}}
        hyper.update(HYPER)
        for poison in ("nan", "+inf"):
            groups.setdefault(_env_key(env), []).append(
                {
                    "kind": "amp",
                    "label": label,
                    "framework": fw,
                    "implementation": impl,
                    "hyper": hyper,
                    "steps": STEPS,
                    "k": K,
                    "poison": poison,
                }
            )
    done = _run(groups)
    by = {(d["job"]["label"], d["job"].get("poison"), d["job"]["kind"]): d["result"] for d in done}
    prop = [compare_propagation(label, profiles[label], poison, by) for label in impls for poison in POISONS]
    amp_rows = [compare_amp(label, poison, by) for label in amps for poison in ("nan", "+inf")]
    return {"steps": STEPS, "k": K, "dtype": DTYPE, "hyper": HYPER, "propagation": prop, "amp": amp_rows}


def _trace(res: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    trace = res.get("trace")
    return list(trace) if isinstance(trace, list) else None


def _failure(res: Mapping[str, Any]) -> str:
    if "crash" in res:
        return f"crash: {res['crash']} {res.get('stderr', '')[-160:]}"
    return f"{res.get('error', 'error')}: {res.get('message', '')}"


def _classes(trace: Sequence[Mapping[str, Any]], t: int, elem: int = 0) -> dict[str, str]:
    point = trace[t - 1]
    return {q: kind(float(from_bits(point[q])[elem])) for q in ("theta", "m", "v")}


def compare_propagation(
    label: str, profile: str, poison: str, by: Mapping[tuple[str, Any, str], Any]
) -> dict[str, Any]:
    """The poisoned element's classes against the rule, and the clean elements' independence."""
    got, clean = by[(label, poison, "propagation")], by[(label, None, "propagation")]
    rule = by[(f"rule[{profile}]", poison, "propagation")]
    row: dict[str, Any] = {"implementation": label, "profile": profile, "poison": poison}
    tg, tc, tr = _trace(got), _trace(clean), _trace(rule)
    if tg is None or tc is None or tr is None:
        row["failure"] = _failure(got if tg is None else clean if tc is None else rule)
        return row
    row["classes"] = {t: _classes(tg, t) for t in range(K, STEPS + 1)}
    row["rule"] = {t: _classes(tr, t) for t in range(K, STEPS + 1)}
    row["differs"] = [
        {"step": t, "quantity": q, "got": row["classes"][t][q], "rule": row["rule"][t][q]}
        for t in range(K, STEPS + 1)
        for q in ("theta", "m", "v")
        if row["classes"][t][q] != row["rule"][t][q]
    ]
    leaks = []
    for t in range(1, STEPS + 1):
        for q in ("theta", "m", "v"):
            a, b = tg[t - 1][q], tc[t - 1][q]
            first = 0 if t < K else 1  # before k every element must be untouched
            if a[first:] != b[first:]:
                leaks.append({"step": t, "quantity": q})
    row["neighbours_untouched"] = not leaks
    row["leaks"] = leaks
    row["matches_rule"] = not row["differs"] and not leaks
    return row


def _ulps(a: Any, b: Any) -> float:
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return float("inf")
    sp = np.spacing(np.abs(y).astype(np.float32)).astype(np.float64)
    return float(np.max(np.abs(x - y) / sp))


def compare_amp(label: str, poison: str, by: Mapping[tuple[str, Any, str], Any]) -> dict[str, Any]:
    """Was step ``K`` skipped as if it never happened?"""
    fw = AMP[label][0]
    res = by[(label, poison, "amp")]
    ref = by[(f"dropped[{AMP_PROFILE[fw]}]", "nan", "propagation")]
    row: dict[str, Any] = {"mechanism": label, "poison": poison, "profile": AMP_PROFILE[fw]}
    tg, tr = _trace(res), _trace(ref)
    if tg is None or tr is None:
        row["failure"] = _failure(res if tg is None else ref)
        return row
    row["native"] = res.get("mechanism")
    if res.get("apply_error"):
        row["apply_error"] = res["apply_error"]
    before, at = tg[K - 2], tg[K - 1]
    row["unchanged_at_k"] = all(before[q] == at[q] for q in ("theta", "m", "v"))
    row["count_before_after"] = [before["step"], at["step"]]
    row["count_not_advanced"] = before["step"] == at["step"]
    for extra in ("scale", "outer_iterations", "notfinite_count"):
        if extra in at:
            row[extra] = [before[extra], at[extra]]
    later = [tg[t] for t in range(K, STEPS)]  # steps k+1..end, aligned with the dropped stream
    expect = [tr[t] for t in range(K - 1, STEPS - 1)]
    ulps = max(
        _ulps(from_bits(a["theta"]), from_bits(b["theta"])) for a, b in zip(later, expect, strict=True)
    )
    row["after_ulps"] = ulps if np.isfinite(ulps) else None
    row["all_finite_after"] = all(np.all(np.isfinite(from_bits(a["theta"]))) for a in later)
    row["as_if_never_happened"] = bool(
        row["unchanged_at_k"] and row["count_not_advanced"] and row["all_finite_after"]
    )
    return row


_SHORT = {"nan": "NaN", "+inf": "+inf", "-inf": "-inf", "finite": "fin"}


def _cls(c: Mapping[str, str]) -> str:
    return " ".join(_SHORT[c[q]] for q in ("theta", "m", "v"))


def to_markdown(doc: Mapping[str, Any]) -> str:
    k, steps = doc["k"], doc["steps"]
    lines = [
        "# NaN and Inf: what each implementation does with a non-finite gradient",
        "",
        "Generated by `python -m conformance.reliability.nan_inf --out docs/reports/reliability` "
        "(raw results in `nan_inf.json`); "
        + ", ".join(f"`{a}` {b}" for a, b in sorted(doc.get("versions", {}).items()))
        + ".",
        "",
        f"A parameter of four elements, {steps} steps of fixed gradients in {doc['dtype']}; at step "
        f"k = {k} the gradient of element 0 is NaN, +inf or -inf, then clean. Each implementation "
        "runs with its own profile (lr = weight_decay = 0.01) through its adapter, which passes "
        "non-finite gradients through untouched. **The rule** is the reference with the same "
        "profile (docs/spec.md section 6: IEEE 754 per element, never skipped). Cells: the class "
        "of the poisoned element's θ, m and v (`fin` finite). *Neighbours*: the clean elements "
        "equal, bit for bit, those of the same implementation on the clean stream.",
        "",
    ]
    for poison in POISONS:
        rows = [r for r in doc["propagation"] if r["poison"] == poison]
        lines += [
            f"## Gradient {poison} at step {k}",
            "",
            f"| implementation | step {k}: θ m v | step {k + 1} | step {steps} | rule at {k} / {k + 1} / "
            f"{steps} | neighbours | verdict |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            if "failure" in r:
                lines.append(f"| {r['implementation']} | {md_code(r['failure'])} | | | | | failed |")
                continue
            c, ru = r["classes"], r["rule"]

            def at(d: Mapping[Any, Any], t: int) -> Any:
                return d.get(t, d.get(str(t)))

            verdict = (
                "as the rule"
                if r["matches_rule"]
                else _diff_text(r["differs"]) + ("; leaks into neighbours" if r["leaks"] else "")
            )
            lines.append(
                f"| {r['implementation']} [{r['profile']}] | {_cls(at(c, k))} | {_cls(at(c, k + 1))} | "
                f"{_cls(at(c, steps))} | {_cls(at(ru, k))} / {_cls(at(ru, k + 1))} / {_cls(at(ru, steps))} | "
                f"{'untouched' if r['neighbours_untouched'] else 'CHANGED'} | {verdict} |"
            )
        lines.append("")
    lines += [
        "## Skipped steps (AMP-style)",
        "",
        f"The frameworks' own skip of a step whose gradient is not finite, called natively (not "
        f"through the adapters); the gradient of element 0 is poisoned at step {k}. Expected: the "
        "step never happened: θ, m, v bit-identical to the step before, the count that drives "
        "the bias correction not advanced, and afterwards the reference run on the stream "
        "without that step (difference in float32 ulps of θ, all later steps). MLX has no such "
        "mechanism (`mlx.optimizers` has no loss scaling or non-finite skip).",
        "",
        "| mechanism | poison | θ, m, v unchanged at k | count before / at k | scale | "
        "θ after vs reference without the step | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in doc["amp"]:
        if "failure" in r:
            lines.append(f"| {r['mechanism']} | {r['poison']} | {md_code(r['failure'])} | | | | failed |")
            continue
        scale = r.get("scale")
        lines.append(
            f"| {r['mechanism']} | {r['poison']} | {'yes' if r['unchanged_at_k'] else 'NO'} | "
            f"{r['count_before_after'][0]} / {r['count_before_after'][1]} | "
            f"{'' if scale is None else f'{scale[0]:g} -> {scale[1]:g}'} | "
            f"{'not finite' if r['after_ulps'] is None else format(r['after_ulps'], '.3g') + ' ulp'} | "
            f"{'as if the step never happened' if r['as_if_never_happened'] else 'NO'} |"
        )
    notes = sorted({f"{r['mechanism']}: {r['apply_error']}" for r in doc["amp"] if r.get("apply_error")})
    if notes:
        lines += ["", "Found on the way (the JAX rows then use the jitted `stateless_apply`):", ""]
        lines += [f"* {md_code(n)}" for n in notes]
        lines += ["", "Reproduce:", "", "```console", KERAS_JAX_REPRO, "```"]
    lines += ["", "## Differences from the rule", ""]
    lines += [f"* {s}" for s in summary(doc)] or ["* none"]
    lines += ["", WHY]
    return "\n".join(lines) + "\n"


KERAS_JAX_REPRO = (
    'KERAS_BACKEND=jax python -c "import numpy as np, keras; '
    "o = keras.optimizers.LossScaleOptimizer(keras.optimizers.AdamW()); "
    "v = keras.Variable(np.ones(4, 'float32')); o.build([v]); "
    "o.apply([np.ones(4, 'float32')], [v])\"   # jax.errors.UnexpectedTracerError"
)

WHY = """## Why

* **torch** (all three implementations): the first moment is a `lerp`,
  `exp_avg.lerp_(grad, 1 - beta1)` in `torch/optim/adam.py` (`torch._foreach_lerp_` for foreach;
  the fused CPU kernel behaves the same), i.e. m + w(g - m). Once m is infinite, the next finite
  gradient gives inf - inf = NaN, where the rule's beta1 m + (1 - beta1) g stays infinite. v uses
  `mul_(beta2).addcmul_(grad, grad, ...)` and stays +inf, as the rule. The parameter is NaN from
  step k on either way, so only the state differs: a checkpoint, an AMSGrad maximum, a diagnosis
  that reads m.
* **Keras on TensorFlow and JAX** (`keras/src/optimizers/adam.py`, `update_step`): m += (g - m)(1 -
  beta1) and v += (g^2 - v)(1 - beta2): both become NaN at the first finite gradient after the
  infinite one. Keras' torch backend (`keras/src/backend/torch/optimizers/torch_adam.py`) uses
  `_foreach_mul_` then `_foreach_add_` (beta m + (1 - beta) g) and follows the rule.
* **Optax** (`optax.tree.update_moment`: (1 - beta) g + beta m) and **MLX** (beta m + (1 - beta) g)
  follow the rule.
* docs/spec.md section 6 says the rule "is what PyTorch computes (without AMP's found_inf skip)":
  true for the parameters and for a NaN gradient; for an infinite gradient PyTorch's m differs
  from the next step on (NaN instead of +-inf)."""


def summary(doc: Mapping[str, Any]) -> list[str]:
    """One line per implementation and poison that differs from the rule."""
    out = []
    for r in doc["propagation"]:
        if "failure" in r:
            out.append(f"{r['implementation']}, gradient {r['poison']}: failed ({r['failure'][:120]})")
        elif not r["matches_rule"]:
            text = _diff_text(r["differs"]) + ("; leaks into neighbours" if r["leaks"] else "")
            out.append(f"{r['implementation']}, gradient {r['poison']} at step {doc['k']}: {text}")
    return out


def _diff_text(differs: Sequence[Mapping[str, Any]]) -> str:
    """``m NaN from step 4 (rule +inf)``, once per quantity (its first differing step)."""
    first: dict[str, Mapping[str, Any]] = {}
    for d in differs:
        first.setdefault(str(d["quantity"]), d)
    return "; ".join(
        f"{q} {_SHORT[d['got']]} from step {d['step']} (rule {_SHORT[d['rule']]})" for q, d in first.items()
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m conformance.reliability.nan_inf", description=__doc__)
    p.add_argument("--out", type=Path, required=True, help="directory for nan_inf.json and nan_inf.md")
    p.add_argument("--implementations", nargs="*", help=f"a subset of {list(IMPLEMENTATIONS)}")
    p.add_argument("--amp", nargs="*", help=f"a subset of {list(AMP)}")
    a = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    doc = collect(a.implementations, a.amp)
    doc = {"report": "nan_inf", "versions": versions(), **doc}
    doc["differences"] = summary(doc)
    js, md = write_report(a.out, "nan_inf", doc, to_markdown(doc))
    print(f"wrote {js} and {md}")
    for line in doc["differences"]:
        print("  " + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
