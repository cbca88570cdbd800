r"""Translate an AdamW configuration from one framework to another, with the residual bounded.

``adamw-ref translate --from torch --to keras --lr 1e-3 --weight-decay 0.01 [--json]`` prints the
target framework's constructor call that reproduces the source trajectory, or the closest one
and a bound on what still differs. Everything is computed on :class:`~adamw_ref.AdamWConfig`
(the two profiles' knobs); the native argument spellings live in :data:`FRAMEWORKS` only.

**Convention of the bounds.** Both optimizers see the *same* gradient sequence (recorded
gradients, as in the conformance suite; in closed-loop training a difference also feeds back
through the loss, which no optimizer-level bound can capture). Schedules are constant. Then the
moments :math:`m, v` are identical on both sides (decoupled decay does not enter them), and the
parameter difference obeys :math:`d_t=(1-s_t)d_{t-1}+\alpha\,\delta_t`, so
:math:`|d_N|\le\sum_{t\le N}\alpha\,\delta_t` with :math:`\delta_t` the per-step difference of
the update direction :math:`u_t`. Three facts bound :math:`\delta_t` without knowing the gradients:

* :math:`|\hat m_t|\le C_t\sqrt{\hat v_t}` (Cauchy-Schwarz on the two moving averages), with
  :math:`C_t=\sqrt{\sum_{j<t}w_j^2/z_j}\;\sqrt{1-\beta_2^t}/(1-\beta_1^t)`,
  :math:`w_j=(1-\beta_1)\beta_1^j`, :math:`z_j=(1-\beta_2)\beta_2^j`; hence :math:`|u_t|\le C_t`.
* Two epsilons :math:`a,b` in :math:`\hat m/(\sqrt{\hat v}+\cdot)`:
  :math:`|u^a-u^b|\le C_t\,|a-b|\,\max_{r\ge G} r/((r+a)(r+b))`, which is
  :math:`C_t|a-b|/(\sqrt a+\sqrt b)^2` for any gradients and :math:`C_t|a-b|\,G/((G+a)(G+b))`
  when :math:`\sqrt{\hat v_t}\ge G\ge\sqrt{ab}` (``--grad-scale G``: every gradient element has
  :math:`|g|\ge G`, which implies it). Keras' :math:`\hat\epsilon` is the canonical
  :math:`\epsilon_t=\hat\epsilon/\sqrt{1-\beta_2^t}`.
* Decay after vs before the step: :math:`\delta_t\le s_t C_t`; proximal vs multiplicative decay:
  :math:`|\theta|\,s_t^2/(1+s_t)` per step (``--param-scale`` bounds :math:`|\theta|`).

Rounding adds :math:`N\,c\,u\,(|\theta|+\alpha C)` (``c=24``, two implementations each rounding
in ``dtype``); an *exact* translation differs by that only.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from adamw_ref import AdamWConfig, get_profile
from adamw_ref.formats import FORMATS
from adamw_ref.knobs import DecayForm, DecayScaling, EpsPlacement, StepCountScope
from adamw_ref.schedules import Constant

NativeArgs = Callable[[AdamWConfig], dict[str, Any]]


@dataclass(frozen=True)
class Framework:
    """A translatable framework: its profile, constructor, native argument spelling, and the
    knobs/features its constructor can set (beyond lr, betas, eps, weight decay)."""

    name: str
    profile: str
    constructor: str
    native_args: NativeArgs
    settable: frozenset[str] = frozenset()
    features: frozenset[str] = frozenset({"amsgrad"})


def _b(c: AdamWConfig) -> tuple[float, float]:
    return (c.beta1, c.beta2)


# ---- The one place where native argument names are spelled. -----------------------------------
FRAMEWORKS: dict[str, Framework] = {
    f.name: f
    for f in (
        Framework(
            "torch",
            "torch",
            "torch.optim.AdamW",
            lambda c: {
                "lr": c.lr,
                "betas": _b(c),
                "eps": c.eps,
                "weight_decay": c.weight_decay,
                "amsgrad": c.amsgrad,
                "maximize": c.maximize,
            },
            features=frozenset({"amsgrad", "maximize"}),
        ),
        Framework(
            "keras",
            "keras3",
            "keras.optimizers.AdamW",
            lambda c: {
                "learning_rate": c.lr,
                "weight_decay": c.weight_decay,
                "beta_1": c.beta1,
                "beta_2": c.beta2,
                "epsilon": c.eps,
                "amsgrad": c.amsgrad,
            },
        ),
        Framework(
            "tf_keras",
            "tf_keras",
            "tf_keras.optimizers.AdamW",
            lambda c: {
                "learning_rate": c.lr,
                "weight_decay": c.weight_decay,
                "beta_1": c.beta1,
                "beta_2": c.beta2,
                "epsilon": c.eps,
                "amsgrad": c.amsgrad,
            },
        ),
        Framework(
            "optax",
            "optax",
            "optax.adamw",
            lambda c: {
                "learning_rate": c.lr,
                "b1": c.beta1,
                "b2": c.beta2,
                "eps": c.eps,
                "eps_root": c.eps_root,
                "weight_decay": c.weight_decay,
                "nesterov": c.nesterov,
            },
            settable=frozenset({"eps_root"}),
            features=frozenset({"nesterov"}),
        ),
        Framework(
            "mlx",
            "mlx",
            "mlx.optimizers.AdamW",
            lambda c: {
                "learning_rate": c.lr,
                "betas": list(_b(c)),
                "eps": c.eps,
                "weight_decay": c.weight_decay,
                "bias_correction": c.bias_correction,
            },
            settable=frozenset({"bias_correction"}),
            features=frozenset(),
        ),
        Framework(
            "paper",
            "paper",
            "Loshchilov & Hutter Algorithm 2",
            lambda c: {
                "alpha": c.lr,
                "beta_1": c.beta1,
                "beta_2": c.beta2,
                "epsilon": c.eps,
                "lambda": c.weight_decay,
                "eta_t": 1.0,
            },
            features=frozenset(),
        ),
        Framework(
            "tfa",
            "tfa",
            "tfa.optimizers.AdamW",
            lambda c: {
                "weight_decay": c.weight_decay,
                "learning_rate": c.lr,
                "beta_1": c.beta1,
                "beta_2": c.beta2,
                "epsilon": c.eps,
                "amsgrad": c.amsgrad,
            },
        ),
        Framework(
            "hf_legacy",
            "hf_legacy",
            "transformers.AdamW",
            lambda c: {
                "lr": c.lr,
                "betas": _b(c),
                "eps": c.eps,
                "weight_decay": c.weight_decay,
                "correct_bias": c.bias_correction,
            },
            settable=frozenset({"bias_correction"}),
            features=frozenset(),
        ),
        Framework(
            "apex",
            "apex",
            "apex.optimizers.FusedAdam",
            lambda c: {
                "lr": c.lr,
                "betas": _b(c),
                "eps": c.eps,
                "weight_decay": c.weight_decay,
                "adam_w_mode": True,
                "bias_correction": c.bias_correction,
            },
            settable=frozenset({"bias_correction"}),
            features=frozenset(),
        ),
    )
}

_HYPER = ("lr", "beta1", "beta2", "eps", "weight_decay")


@dataclass(frozen=True)
class Residual:
    """One knob on which the target still differs, with its per-step bound (see module doc)."""

    knob: str
    description: str
    per_step: str  # the formula, in words/math
    bounded: bool = True


@dataclass
class Translation:
    """The result: both configs, the target's native call, residuals and notes."""

    source: str
    target: str
    source_config: AdamWConfig
    target_config: AdamWConfig
    residuals: list[Residual] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    eps_match: str = "asymptotic"
    grad_scale: float | None = None
    param_scale: float = 1.0

    @property
    def exact(self) -> bool:
        return not self.residuals

    @property
    def reproducible(self) -> bool:
        return all(r.bounded for r in self.residuals)

    def native(self, which: str = "target") -> dict[str, Any]:
        fw = FRAMEWORKS[self.target if which == "target" else self.source]
        return fw.native_args(self.target_config if which == "target" else self.source_config)

    def call(self, which: str = "target") -> str:
        fw = FRAMEWORKS[self.target if which == "target" else self.source]
        args = ", ".join(f"{k}={v!r}" for k, v in self.native(which).items())
        return f"{fw.constructor}({args})"


# ------------------------------------------------------------------------------------ the bounds
def effective_eps(config: AdamWConfig, t: int) -> float:
    r"""The canonical :math:`\epsilon_t` (after bias correction) of ``config`` at step ``t``."""
    if config.eps_placement is EpsPlacement.BEFORE_BIAS_CORRECTION and config.bias_correction:
        return config.eps / math.sqrt(1.0 - config.beta2**t)
    return config.eps


def ratio_bound(config: AdamWConfig, t: int) -> float:
    r""":math:`C_t`, a bound on :math:`|\hat m_t|/\sqrt{\hat v_t}` and so on :math:`|u_t|`."""
    b1, b2 = config.beta1, config.beta2
    if b2 == 0.0:
        return 1.0 if b1 == 0.0 else math.inf
    q = b1 * b1 / b2
    s = sum(q**j for j in range(t)) if q != 1.0 else float(t)
    c = (1 - b1) / math.sqrt(1 - b2) * math.sqrt(s)
    if config.bias_correction:
        c *= math.sqrt(1 - b2**t) / (1 - b1**t)
    return c


def _eps_gap(a: float, b: float, grad_scale: float | None) -> float:
    r""":math:`|a-b|\max_{r\ge G} r/((r+a)(r+b))`."""
    if a == b:
        return 0.0
    peak = math.sqrt(a * b)
    if grad_scale is not None and grad_scale >= peak:
        r = grad_scale
        return abs(a - b) * r / ((r + a) * (r + b))
    return abs(a - b) / (math.sqrt(a) + math.sqrt(b)) ** 2 if a + b > 0 else 0.0


def _decay_strength(config: AdamWConfig, wd: float) -> float:
    """Per-step decay strength s with constant schedules."""
    if config.decay_scaling is DecayScaling.LR:
        return config.lr * wd
    return wd


def step_bounds(tr: Translation, steps: int, dtype: str = "float64") -> list[float]:
    """Per-element bound on |theta_source - theta_target| after steps 1..``steps`` (cumulative),
    including rounding in ``dtype``; ``inf`` if a residual is unbounded."""
    if not tr.reproducible:
        return [math.inf] * steps
    s_cfg, t_cfg = tr.source_config, tr.target_config
    u = FORMATS[dtype].unit_roundoff
    alpha = s_cfg.lr
    s_decay = _decay_strength(s_cfg, s_cfg.weight_decay) if s_cfg.decay_form is not DecayForm.NONE else 0.0
    knobs = {r.knob for r in tr.residuals}
    total = 0.0
    out = []
    for t in range(1, steps + 1):
        c_t = ratio_bound(s_cfg, t)
        delta = 0.0
        if "eps" in knobs:
            delta += c_t * _eps_gap(effective_eps(s_cfg, t), effective_eps(t_cfg, t), tr.grad_scale)
        if "decay_timing" in knobs:
            delta += s_decay * c_t
        total += alpha * delta
        if "decay_form" in knobs:
            total += tr.param_scale * s_decay**2 / (1 + s_decay)
        total += 24 * u * (tr.param_scale + alpha * c_t)
        out.append(total)
    return out


def eps_table(
    tr: Translation, steps: Sequence[int] = (1, 10, 100, 1000, 10000)
) -> list[tuple[int, float, float]]:
    """(t, source eps_t, target eps_t) at a few steps."""
    return [(t, effective_eps(tr.source_config, t), effective_eps(tr.target_config, t)) for t in steps]


def eps_settles_at(tr: Translation, rel: float = 0.01, limit: int = 10**7) -> int | None:
    """First step t with |eps_t^target - eps_t^source| <= rel * eps_t^source for all later t
    (the ratio is monotone in t); None if it never does."""
    a, b = tr.source_config, tr.target_config

    def ok(t: int) -> bool:
        ea, eb = effective_eps(a, t), effective_eps(b, t)
        return abs(ea - eb) <= rel * ea

    if ok(limit) is False:
        return None
    lo, hi = 1, limit
    if ok(1):
        return 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


# ------------------------------------------------------------------------------- the translation
def source_config(
    framework: str,
    *,
    lr: float | None = None,
    weight_decay: float | None = None,
    eps: float | None = None,
    betas: tuple[float, float] | None = None,
    amsgrad: bool | None = None,
) -> AdamWConfig:
    """The framework's profile with the given native hyperparameters (others: its defaults)."""
    cfg = get_profile(_framework(framework).profile).config
    changes: dict[str, Any] = {}
    if lr is not None:
        changes["lr"] = lr
    if weight_decay is not None:
        changes["weight_decay"] = weight_decay
    if eps is not None:
        changes["eps"] = eps
    if betas is not None:
        changes["beta1"], changes["beta2"] = betas
    if amsgrad is not None:
        changes["amsgrad"] = amsgrad
    return cfg.replace(**changes)


def framework_name(name: str) -> str:
    """The :data:`FRAMEWORKS` key for ``name``: a framework name, or a profile name or alias whose
    profile exactly one framework here implements (``keras3`` and ``keras-jax`` -> ``keras``)."""
    if name in FRAMEWORKS:
        return name
    from adamw_ref.profiles import profile_name

    by_profile = [f.name for f in FRAMEWORKS.values() if f.profile == profile_name(name)]
    return by_profile[0] if len(by_profile) == 1 else name


def _framework_arg(name: str) -> str:
    key = framework_name(name)
    if key not in FRAMEWORKS:
        raise argparse.ArgumentTypeError(
            f"{name!r}: unknown framework; expected one of {', '.join(sorted(FRAMEWORKS))} "
            "(or a profile name such as keras3)"
        )
    return key


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _framework(name: str) -> Framework:
    fw = FRAMEWORKS.get(framework_name(name))
    if fw is None:
        from adamw_ref.errors import ConfigError

        raise ConfigError(
            "framework",
            name,
            f"unknown; expected one of {sorted(FRAMEWORKS)} "
            "(profile names and their aliases are accepted too)",
        )
    return fw


def translate(
    source: str,
    target: str,
    config: AdamWConfig | None = None,
    *,
    eps_match: str = "asymptotic",
    grad_scale: float | None = None,
    param_scale: float = 1.0,
) -> Translation:
    """The target config that reproduces ``config`` (a ``source``-framework config; default:
    the source's defaults), or the closest one with its residuals.

    ``eps_match``: ``asymptotic`` (equal effective eps as t grows) or ``first`` (equal at t=1)
    when the two frameworks place eps differently.
    """
    from adamw_ref.errors import ConfigError

    src_fw, dst_fw = _framework(source), _framework(target)
    if eps_match not in ("asymptotic", "first"):
        raise ConfigError("eps_match", eps_match, "must be 'asymptotic' or 'first'")
    if grad_scale is not None and not (grad_scale > 0 and math.isfinite(grad_scale)):
        raise ConfigError("grad_scale", grad_scale, "must be a finite number > 0")
    S = config if config is not None else get_profile(src_fw.profile).config
    for name in ("lr_schedule", "wd_schedule"):
        if not isinstance(getattr(S, name), Constant) or getattr(S, name).value != 1.0:
            raise ConfigError(
                name,
                getattr(S, name).to_json(),
                "translate handles constant schedules only (see docs/translate.md)",
            )
    T0 = get_profile(dst_fw.profile).config
    res: list[Residual] = []
    notes: list[str] = []
    ch: dict[str, Any] = {k: getattr(S, k) for k in _HYPER}
    ch.update(amsgrad=S.amsgrad, maximize=S.maximize, nesterov=S.nesterov, eps_root=S.eps_root)

    # Weight decay: the per-step strength s must match.
    coupled = DecayForm.COUPLED_L2 in (S.decay_form, T0.decay_form)
    if coupled and S.decay_form is not T0.decay_form and S.weight_decay != 0:
        res.append(
            Residual(
                "decay_form",
                "coupled L2 (through the adaptive denominator) "
                "cannot be reproduced by decoupled decay or vice versa",
                "unbounded: depends on the gradient history",
                bounded=False,
            )
        )
    wd = S.weight_decay
    f_src = S.lr if S.decay_scaling is DecayScaling.LR else 1.0
    f_dst = S.lr if T0.decay_scaling is DecayScaling.LR else 1.0
    if f_dst == 0.0 and wd * f_src != 0.0:
        res.append(
            Residual("decay_scaling", "the target scales decay by lr, which is 0", "unbounded", bounded=False)
        )
    else:
        ch["weight_decay"] = wd * f_src / f_dst if f_dst else wd
    if S.decay_scaling is not T0.decay_scaling and wd != 0:
        notes.append(
            f"weight decay: the source decays by s = {_sfmt(S)} per step, the target by "
            f"{_sfmt(T0)}; {target} weight_decay = {ch['weight_decay']!r} gives the same s. "
            "With a learning-rate schedule the decay must follow it: schedule weight_decay "
            "with the same multiplier where the target does not scale decay by lr."
        )
    decoupled = {DecayForm.MULTIPLICATIVE, DecayForm.ADDED_TO_UPDATE}
    if S.decay_form in decoupled and T0.decay_form in decoupled and S.decay_form is not T0.decay_form:
        notes.append(
            "decay form: multiplicative (1-s)theta vs added to the update "
            "theta - lr(u + wd theta): equal in exact arithmetic, rounding differs."
        )
    if DecayForm.PROXIMAL in (S.decay_form, T0.decay_form) and S.decay_form is not T0.decay_form:
        res.append(
            Residual("decay_form", "proximal theta/(1+s) vs multiplicative (1-s)theta", "|theta| s^2/(1+s)")
        )
    if S.decay_timing is not T0.decay_timing and wd != 0:
        res.append(
            Residual(
                "decay_timing",
                f"decay {S.decay_timing.value} in the source, {T0.decay_timing.value} in the target",
                "lr * s * C_t",
            )
        )

    # Bias correction.
    if S.bias_correction is not T0.bias_correction:
        if "bias_correction" in dst_fw.settable:
            ch["bias_correction"] = S.bias_correction
            notes.append(
                f"{target}: bias_correction={S.bias_correction} must be passed "
                f"explicitly (its default is {T0.bias_correction})."
            )
        else:
            res.append(
                Residual(
                    "bias_correction",
                    f"the source has bias_correction={S.bias_correction}; {target} cannot change it",
                    "unbounded: the first steps differ by up to 1/(1-beta1)",
                    bounded=False,
                )
            )

    # Epsilon.
    if S.eps_placement is not T0.eps_placement and S.eps != 0:
        k = math.sqrt(1.0 - S.beta2)
        if eps_match == "first":
            ch["eps"] = S.eps * k if T0.eps_placement is EpsPlacement.BEFORE_BIAS_CORRECTION else S.eps / k
        res.append(
            Residual(
                "eps",
                f"eps placement differs ({S.eps_placement.value} vs "
                f"{T0.eps_placement.value}): eps_t = eps_hat/sqrt(1-beta2^t) cannot "
                "equal a constant eps at every step",
                "lr * C_t * |eps_t - eps'_t| * max_{r>=G} r/((r+eps_t)(r+eps'_t))",
            )
        )

    # Features and the remaining knobs.
    for feat in ("amsgrad", "maximize", "nesterov"):
        if getattr(S, feat) and feat not in dst_fw.features:
            res.append(
                Residual(feat, f"{target} ({dst_fw.constructor}) has no {feat}", "unbounded", bounded=False)
            )
    if S.eps_root and "eps_root" not in dst_fw.settable:
        res.append(Residual("eps_root", f"{target} has no eps_root", "unbounded", bounded=False))
    if S.amsgrad and S.amsgrad_mode is not T0.amsgrad_mode:
        res.append(
            Residual(
                "amsgrad_mode",
                f"AMSGrad max over {S.amsgrad_mode.value} vs {T0.amsgrad_mode.value}",
                "unbounded by this tool",
                bounded=False,
            )
        )
    if S.step_count_scope is not T0.step_count_scope:
        notes.append(
            "step counts: "
            + ("per parameter" if S.step_count_scope is StepCountScope.PER_PARAMETER else "global")
            + " in the source, "
            + ("per parameter" if T0.step_count_scope is StepCountScope.PER_PARAMETER else "global")
            + " in the target: identical unless some parameters "
            "skip steps (no gradient); then bias corrections differ for them."
        )
    if S.schedule_count is not T0.schedule_count:
        notes.append(
            "schedule count (pre vs post increment) differs: irrelevant for a "
            "constant learning rate; with a schedule, shift it by one step."
        )
    if S.bias_correction_offset != T0.bias_correction_offset:
        res.append(Residual("bias_correction_offset", "offset differs", "unbounded", bounded=False))
    if S.groups:
        notes.append(
            "parameter groups: pass the same per-parameter lr/weight_decay "
            "(translated as above) through the target's own mechanism "
            "(torch param groups, optax mask, keras exclude_from_weight_decay)."
        )

    target_cfg = T0.replace(**ch)
    prof = get_profile(dst_fw.profile)
    defaults = prof.config
    for hp in ("weight_decay", "eps", "lr"):
        want = getattr(target_cfg, hp)
        if hp in prof.required:
            notes.append(f"{target}: {hp} is required (no default): {want!r}.")
        elif getattr(defaults, hp) != want:
            notes.append(
                f"{target}: pass {hp} explicitly (its default "
                f"{getattr(defaults, hp)!r} differs from the needed {want!r})."
            )
    return Translation(
        src_fw.name, dst_fw.name, S, target_cfg, res, notes, eps_match, grad_scale, param_scale
    )


def _sfmt(c: AdamWConfig) -> str:
    return {
        DecayScaling.LR: "lr*wd",
        DecayScaling.SCHEDULE_MULTIPLIER: "eta_t*wd (eta_t=1)",
        DecayScaling.UNSCALED: "wd",
    }[c.decay_scaling]


# ------------------------------------------------------------------------------------- rendering
def to_json(tr: Translation, steps: int = 100) -> dict[str, Any]:
    """A JSON-ready description of ``tr`` with the bound after ``steps`` steps."""
    bounds = step_bounds(tr, steps)
    out: dict[str, Any] = {
        "from": tr.source,
        "to": tr.target,
        "source": {
            "call": tr.call("source"),
            "native": _jsonable(tr.native("source")),
            "config": tr.source_config.to_json(),
        },
        "target": {
            "call": tr.call("target"),
            "native": _jsonable(tr.native("target")),
            "config": tr.target_config.to_json(),
        },
        "exact": tr.exact,
        "reproducible": tr.reproducible,
        "residuals": [
            {"knob": r.knob, "description": r.description, "perStep": r.per_step, "bounded": r.bounded}
            for r in tr.residuals
        ],
        "notes": tr.notes,
        "steps": steps,
        "gradScale": tr.grad_scale,
        "paramScale": tr.param_scale,
        "paramBound": None if math.isinf(bounds[-1]) else bounds[-1],
    }
    if any(r.knob == "eps" for r in tr.residuals):
        out["eps"] = {
            "match": tr.eps_match,
            "table": [
                {"step": t, "source": a, "target": b, "ratio": b / a if a else None}
                for t, a, b in eps_table(tr)
            ],
            "within1PercentFromStep": eps_settles_at(tr),
        }
    return out


def _jsonable(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def to_text(tr: Translation, steps: int = 100) -> str:
    """The human-readable report."""
    lines = [
        f"{tr.source} -> {tr.target}",
        f"  source: {tr.call('source')}",
        f"  target: {tr.call('target')}",
    ]
    if tr.exact:
        lines.append("  exact: the same trajectory in exact arithmetic (rounding differs).")
    elif not tr.reproducible:
        lines.append("  NOT reproducible: " + "; ".join(r.description for r in tr.residuals if not r.bounded))
    for r in tr.residuals:
        lines.append(f"  residual [{r.knob}]: {r.description}; per step <= {r.per_step}")
    if any(r.knob == "eps" for r in tr.residuals):
        choice = (
            "eps_hat = eps: equal as t -> inf"
            if tr.eps_match == "asymptotic"
            else "eps_hat = eps*sqrt(1-beta2): equal at t = 1"
        )
        lines.append(
            f"  eps choice: {choice} (other choice: --eps-match "
            f"{'first' if tr.eps_match == 'asymptotic' else 'asymptotic'})"
        )
        lines.append("    step        eps_t(source)   eps_t(target)   ratio")
        for t, a, b in eps_table(tr):
            lines.append(f"    {t:<10d}  {a:<14.4g}  {b:<14.4g}  {b / a if a else math.nan:.4g}")
        at = eps_settles_at(tr)
        lines.append(
            "    |eps_t(target) - eps_t(source)| < 1% of eps_t(source) "
            + (
                f"from step {at} on"
                if at
                else "never (the ratio tends to "
                f"{effective_eps(tr.target_config, 10**9) / tr.source_config.eps:.4g})"
            )
        )
        g = tr.grad_scale
        tail = ""
        if g:
            gap = abs(effective_eps(tr.source_config, steps) - effective_eps(tr.target_config, steps))
            tail = f" <= {gap / g:.3g} at step {steps} for |g| >= {g:g}"
        lines.append(
            "    it stops mattering once eps_t << sqrt(v_hat): the relative update "
            "difference is <= |eps_t - eps'_t| / sqrt(v_hat)" + tail
        )
    for n in tr.notes:
        lines.append(f"  note: {n}")
    b = step_bounds(tr, steps)[-1]
    scale = f"|g| >= {tr.grad_scale:g}" if tr.grad_scale else "any gradients"
    lines.append(
        f"  bound: |theta_source - theta_target| <= {b:.3g} per element after {steps} "
        f"steps (same gradients, {scale}, |theta| <= {tr.param_scale:g}, binary64)"
        if math.isfinite(b)
        else "  bound: none (not reproducible)"
    )
    return "\n".join(lines)


def cli_main(argv: Sequence[str] | None = None) -> int:
    """``adamw-ref translate --from F --to G [--lr ..] [--weight-decay ..] [--eps ..]
    [--betas B1,B2] [--amsgrad] [--steps N] [--grad-scale G] [--eps-match M] [--json]``."""
    p = _Parser(
        prog="adamw-ref translate", description="Translate an AdamW configuration between frameworks."
    )
    names = ", ".join(sorted(FRAMEWORKS))
    p.add_argument(
        "--from",
        dest="source",
        required=True,
        type=_framework_arg,
        metavar="FRAMEWORK",
        help=f"the recipe's framework: {names} (profile names such as keras3 work too)",
    )
    p.add_argument(
        "--to",
        dest="target",
        required=True,
        type=_framework_arg,
        metavar="FRAMEWORK",
        help="the framework to translate to (same names)",
    )
    p.add_argument("--lr", type=float, help="learning rate (default: the source framework's)")
    p.add_argument("--weight-decay", type=float, help="weight decay (default: the source's)")
    p.add_argument("--eps", type=float, help="epsilon (default: the source's)")
    p.add_argument("--betas", help="beta1,beta2 (default: the source's)")
    p.add_argument("--amsgrad", action="store_true", help="the recipe uses AMSGrad")
    p.add_argument("--steps", type=int, default=100, help="horizon of the stated bound")
    p.add_argument("--grad-scale", type=float, help="lower bound on |g| (tightens eps bounds)")
    p.add_argument("--param-scale", type=float, default=1.0, help="upper bound on |theta|")
    p.add_argument(
        "--eps-match",
        choices=("asymptotic", "first"),
        default="asymptotic",
        help="match epsilon-hat as t grows (asymptotic) or at the first step (first)",
    )
    p.add_argument("--json", action="store_true", help="print the translation as JSON")
    a = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    from adamw_ref.errors import AdamWRefError

    try:
        betas = None
        if a.betas:
            parts = a.betas.split(",")
            if len(parts) != 2:
                p.error(f"--betas: expected 'beta1,beta2', got {a.betas!r}")
            betas = (float(parts[0]), float(parts[1]))
        if a.steps < 1:
            p.error(f"--steps: must be >= 1, got {a.steps}")
        cfg = source_config(
            a.source, lr=a.lr, weight_decay=a.weight_decay, eps=a.eps, betas=betas, amsgrad=a.amsgrad or None
        )
        tr = translate(
            a.source, a.target, cfg, eps_match=a.eps_match, grad_scale=a.grad_scale, param_scale=a.param_scale
        )
    except (AdamWRefError, ValueError) as exc:
        print(f"adamw-ref translate: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(to_json(tr, a.steps), indent=2) if a.json else to_text(tr, a.steps))
    return 0 if tr.reproducible else 1


__all__ = [
    "FRAMEWORKS",
    "Framework",
    "Residual",
    "Translation",
    "cli_main",
    "effective_eps",
    "eps_settles_at",
    "ratio_bound",
    "source_config",
    "step_bounds",
    "to_json",
    "to_text",
    "translate",
]
