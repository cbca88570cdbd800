r"""Which configuration explains a divergent trajectory? And which scenario separates which knobs?

:func:`diagnose` re-runs the binary64 reference on the *same* recorded gradients with candidate
configurations and scores each by the bound ratio of the implementation's trajectory against it
(:mod:`conformance.compare`). A candidate with score :math:`\le 1` *explains* the trajectory; the
simplest one (fewest changes) is named. The candidate space (:func:`candidate_space`):

* every alternative value of every knob (:data:`KNOB_VALUES`, ``bias_correction_offset`` 0..2);
* the flags: ``maximize`` flipped, AMSGrad switched off, or on in either ``amsgrad_mode``,
  ``nesterov`` flipped (where defined), :math:`\epsilon` inside the square root
  (``eps_root`` = :math:`\epsilon` or :math:`\epsilon^2`, with or without the outer
  :math:`\epsilon`);
* every named profile's knob set;
* in a binary64 run, **float32 scalars** (:data:`F32_ROLES`): the reference with one or more
  hyperparameters or derived scalars (lr, :math:`\beta_i`, :math:`\epsilon`, :math:`\lambda`,
  :math:`\beta_i` inside :math:`\beta_i^k`, the bias corrections, the decay strength
  :math:`\alpha_t\lambda_t`) rounded to binary32, found greedily (single roles, then the best set
  extended one role at a time);
* when the gradients hold subnormals of the dtype, flush-to-zero (:data:`FTZ`: subnormal inputs
  read as 0, what XLA and oneDNN CPU kernels do);
* when nothing single explains the trajectory, pairs of the best single changes.

Candidates that cannot change the trajectory here (AMSGrad's mode without AMSGrad, the
step-count scope without frozen parameters, the schedule count under constant schedules, ...)
are merged with the configuration they equal (:func:`effective_key`).

When nothing explains the trajectory, the best candidate is shown as *closest* only when it
lowers the bound ratio by at least :data:`CLOSEST_FACTOR` (10): its trajectory must then
reproduce at least 90 % of the deviation at every step and element (in units of the bound), which
an unrelated change does not do by chance (docs/conformance/identifiability.md measures the
largest factor reached by a wrong candidate). Otherwise the diagnosis says *unexplained* and
gives the residual bound ratio.

``python -m conformance.diagnose --identifiability`` prints the identifiability table
(docs/conformance/identifiability.md): for each knob and each pair of its values, the scenario
that separates them most, and by how much relative to the tolerance.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from adamw_ref import KNOB_FIELDS, PROFILES, AdamWConfig, ConfigError
from adamw_ref import knobs as K
from adamw_ref.arithmetic import Arithmetic, FloatArithmetic
from adamw_ref.formats import BINARY64
from adamw_ref.schedules import Constant
from adapters.reference.oracle import NumpyArithmetic, RefStepper, arithmetic, round_to
from conformance import compare as cmp
from conformance import tolerance

KNOB_VALUES: dict[str, tuple[Any, ...]] = {
    "eps_placement": tuple(m.value for m in K.EpsPlacement),
    "decay_scaling": tuple(m.value for m in K.DecayScaling),
    "decay_form": tuple(m.value for m in K.DecayForm),
    "decay_timing": tuple(m.value for m in K.DecayTiming),
    "bias_correction": (True, False),
    "amsgrad_mode": tuple(m.value for m in K.AmsgradMode),
    "schedule_count": tuple(m.value for m in K.ScheduleCount),
    "step_count_scope": tuple(m.value for m in K.StepCountScope),
    "bias_correction_offset": (0, 1, 2),
}

#: Flags (hyperparameter fields that select a different algorithm) searched besides the knobs.
FLAG_FIELDS: tuple[str, ...] = ("maximize", "amsgrad", "nesterov", "eps_root")

#: A candidate is shown as "closest" only when it lowers the bound ratio by this factor.
CLOSEST_FACTOR = 10.0

MEANING: dict[tuple[str, Any], str] = {
    ("eps_placement", "before_bias_correction"): "eps is epsilon-hat (added to sqrt(v) before "
    "bias correction)",
    ("eps_placement", "after_bias_correction"): "eps is added after bias correction",
    ("decay_scaling", "lr"): "weight decay is multiplied by the (scheduled) lr",
    ("decay_scaling", "schedule_multiplier"): "weight decay is multiplied by the schedule "
    "multiplier only, not by lr",
    ("decay_scaling", "unscaled"): "weight decay is not multiplied by lr",
    ("decay_form", "multiplicative"): "decay is multiplicative (1 - s) theta",
    ("decay_form", "proximal"): "decay is proximal theta / (1 + s)",
    ("decay_form", "added_to_update"): "decay is added to the update before lr scaling",
    ("decay_form", "coupled_l2"): "weight decay is coupled L2 (added to the gradient): Adam+L2, not AdamW",
    ("decay_form", "none"): "no weight decay is applied",
    ("decay_timing", "after_step"): "decay acts on the Adam-updated parameter (after the step)",
    ("decay_timing", "before_step"): "decay acts on the previous parameter (before the step)",
    ("bias_correction", False): "no bias correction",
    ("bias_correction", True): "bias correction is applied",
    ("amsgrad_mode", "bias_corrected_v"): "AMSGrad takes the maximum of the bias-corrected v",
    ("amsgrad_mode", "raw_v"): "AMSGrad takes the maximum of the raw v",
    ("schedule_count", "post_increment"): "schedules see the step count after the increment "
    "(first update uses eta(1))",
    ("schedule_count", "pre_increment"): "schedules see the count before the increment",
    ("step_count_scope", "global"): "bias correction uses the global step count (frozen "
    "parameters still advance it)",
    ("step_count_scope", "per_parameter"): "bias correction uses per-parameter step counts",
    ("bias_correction_offset", 0): "bias correction index k = t",
    ("bias_correction_offset", 1): "bias correction is off by one step (k = t + 1)",
    ("bias_correction_offset", 2): "bias correction is off by two steps (k = t + 2)",
    ("maximize", True): "the gradient's sign is flipped (maximize)",
    ("maximize", False): "maximize is ignored (the gradient is not negated)",
    ("amsgrad", True): "AMSGrad is on (running maximum of v)",
    ("amsgrad", False): "AMSGrad is ignored (no running maximum of v)",
    ("nesterov", True): "Nesterov momentum (NAdamW's m-hat)",
    ("nesterov", False): "Nesterov momentum is ignored",
}

#: Candidates whose difference from the spec is rounding only (graded ``acceptable``).
ACCEPTABLE: dict[tuple[str, Any], str] = {
    ("decay_form", "added_to_update"): "decay_rounding_order",
    ("decay_form", "multiplicative"): "decay_rounding_order",
}

# -- float32 scalars in a float64 run --------------------------------------------------------------

#: The scalars a float64 implementation may hold in float32, and what rounding each models.
F32_ROLES: dict[str, str] = {
    "lr": "lr stored in binary32",
    "beta1": "beta1 stored in binary32 (moments and bias correction)",
    "beta2": "beta2 stored in binary32 (moments and bias correction)",
    "eps": "eps stored in binary32",
    "weight_decay": "weight_decay stored in binary32",
    "beta_in_bias_correction": "beta1, beta2 rounded to binary32 inside beta^k only (the moments "
    "use the binary64 1-beta)",
    "bias_corrections": "the bias corrections 1-beta^k (and sqrt(1-beta2^k)) computed in binary32",
    "decay_strength": "the decay strength lr*wd and 1-lr*wd computed in binary32",
}
_HP_ROLES = ("beta1", "beta2", "lr", "weight_decay", "eps")
#: Role sets tried as one candidate besides the single roles.
_F32_SETS: tuple[tuple[str, ...], ...] = (("lr", "beta1", "beta2", "eps", "weight_decay"),)


def _f32(x: float) -> float:
    with np.errstate(all="ignore"):
        return float(np.float32(x))


class _Tagged(float):
    """A binary64 scalar that remembers where it came from (which hyperparameter, which product)."""

    role: str = ""


def _tag(x: float, role: str) -> _Tagged:
    t = _Tagged(x)
    t.role = role
    return t


def _role(x: Any) -> str:
    return getattr(x, "role", "")


class _F32Scalars(FloatArithmetic):
    """Binary64 scalars with the selected :data:`F32_ROLES` rounded to binary32.

    Hyperparameters are recognised by value (``const`` of a value equal to ``cfg.beta1`` is beta1;
    two hyperparameters with the same value round alike); derived scalars by what they were formed
    from: a product of products is the decay strength, ``1 -`` a power is a bias correction."""

    def __init__(self, cfg: AdamWConfig, roles: frozenset[str]) -> None:
        super().__init__(BINARY64)
        self.roles = roles
        names: dict[float, str] = {}
        for n in _HP_ROLES:
            names.setdefault(float(getattr(cfg, n)), n)
        for g in cfg.groups:
            if g.lr is not None:
                names.setdefault(float(g.lr), "lr")
            if g.weight_decay is not None:
                names.setdefault(float(g.weight_decay), "weight_decay")
        self.names = names

    def name_of(self, x: float) -> str:
        return self.names.get(float(x), "")

    def const(self, x: float) -> _Tagged:
        n = self.name_of(x)
        return _tag(_f32(x) if n in self.roles else float(x), n)

    def _pick(self, exact: float, in_f32: Any, role: str, flag: str) -> _Tagged:
        return _tag(_f32(in_f32()) if flag in self.roles else exact, role)

    def s_sub(self, a: float, b: float) -> _Tagged:
        rb, exact = _role(b), float(a) - float(b)
        if rb == "pow":
            return self._pick(exact, lambda: np.float32(a) - np.float32(b), "bc", "bias_corrections")
        if rb in ("s", "prod"):
            return self._pick(exact, lambda: np.float32(a) - np.float32(b), "factor", "decay_strength")
        return _tag(exact, "")

    def s_add(self, a: float, b: float) -> _Tagged:
        exact = float(a) + float(b)
        if _role(b) in ("s", "prod"):
            return self._pick(exact, lambda: np.float32(a) + np.float32(b), "factor", "decay_strength")
        return _tag(exact, "")

    def s_mul(self, a: float, b: float) -> _Tagged:
        exact = float(a) * float(b)
        if _role(a) in ("prod", "s") or _role(b) in ("prod", "s"):
            return self._pick(exact, lambda: np.float32(a) * np.float32(b), "s", "decay_strength")
        return _tag(exact, "prod")

    def s_div(self, a: float, b: float) -> _Tagged:
        return _tag(super().s_div(float(a), float(b)), "")

    def s_sqrt(self, a: float) -> _Tagged:
        exact = super().s_sqrt(float(a))
        if _role(a) == "bc":
            return self._pick(exact, lambda: np.sqrt(np.float32(a)), "", "bias_corrections")
        return _tag(exact, "")

    def s_pow(self, base: float, k: int) -> _Tagged:
        if "bias_corrections" in self.roles:
            return _tag(_f32(_f32(base) ** k), "pow")
        if "beta_in_bias_correction" in self.roles:
            return _tag(_f32(base) ** k, "pow")
        return _tag(float(base) ** k, "pow")


class ScalarPrecision(NumpyArithmetic):
    """Binary64 vectors (numpy), with the scalars of ``roles`` (:data:`F32_ROLES`) in binary32:
    the reference as a float64 implementation that holds some hyperparameters in float32 runs."""

    def __init__(self, cfg: AdamWConfig, roles: Iterable[str]) -> None:
        super().__init__("float64")
        bad = set(roles) - set(F32_ROLES)
        if bad:
            raise ValueError(f"unknown float32 scalar roles {sorted(bad)}; expected {list(F32_ROLES)}")
        self._s = _F32Scalars(cfg, frozenset(roles))

    @property
    def scalars(self) -> Arithmetic[Any]:
        return self._s

    def lift(self, x: Any) -> Any:
        return np.float64(float(x))

    def const(self, x: float) -> Any:
        n = self._s.name_of(x)
        return np.float64(_f32(x) if n in self._s.roles else float(x))


# -- scoring ------------------------------------------------------------------------------------

#: The flush-to-zero role: subnormal gradients and parameters (in the run's dtype) read as 0,
#: what denormals-are-zero arithmetic does (XLA and oneDNN CPU kernels).
FTZ = "flush_to_zero"


def flush_subnormals(values: Mapping[str, Any], dtype: str) -> dict[str, Any]:
    """``values`` rounded to ``dtype`` with the subnormal entries replaced by 0 (None kept)."""
    from adamw_ref.formats import FORMATS

    tiny = FORMATS[dtype].min_normal
    out: dict[str, Any] = {}
    for k, v in values.items():
        if v is None:
            out[k] = None
            continue
        r = round_to(v, dtype)
        out[k] = np.where(np.abs(r) < tiny, 0.0, r)
    return out


def has_subnormals(grads: Sequence[Mapping[str, Any]], dtype: str) -> bool:
    from adamw_ref.formats import FORMATS

    tiny = FORMATS[dtype].min_normal
    return any(
        v is not None and bool(np.any((np.abs(r := round_to(v, dtype)) < tiny) & (r != 0)))
        for g in grads
        for v in g.values()
    )


def _val(x: Any) -> Any:
    return x.value if isinstance(x, Enum) else x


def reference_points(
    cfg: AdamWConfig,
    p0: Mapping[str, Any],
    grads: Sequence[Mapping[str, Any]],
    dtype: str,
    in_dtype: bool = False,
    arith: Arithmetic[Any] | None = None,
) -> list[tolerance.RefPoint]:
    """The reference on ``dtype``-rounded inputs, in binary64 (or in ``dtype`` if ``in_dtype``,
    or in ``arith`` when given)."""
    a = arith if arith is not None else arithmetic(dtype if in_dtype else "float64")
    r = RefStepper(cfg, {k: round_to(v, dtype) for k, v in p0.items()}, a)
    out = [tolerance.RefPoint(r.params(), *r.moments(), dict(r.state.param_steps))]
    # with param_dtype, the same step without that last rounding gives the unrounded parameters
    # (the state-precision bound is centred on them)
    pre = None if cfg.param_dtype is None else RefStepper(cfg.replace(param_dtype=None), r.params(), a)
    for g in grads:
        gr = {k: None if v is None else round_to(v, dtype) for k, v in g.items()}
        unrounded = None
        if pre is not None:
            pre.state, pre.flat = r.state, r.flat
            pre.step(gr)
            unrounded = pre.params()
        r.step(gr)
        out.append(tolerance.RefPoint(r.params(), *r.moments(), dict(r.state.param_steps), unrounded))
    return out


def score(
    cfg: AdamWConfig,
    p0: Mapping[str, Any],
    grads: Sequence[Mapping[str, Any]],
    got: Sequence[Mapping[str, Any]],
    dtype: str,
    spec: tolerance.ToleranceSpec,
    roles: Iterable[str] = (),
) -> float:
    """Bound ratio of trajectory ``got`` (after steps 1..T) against the reference with ``cfg``
    (with the float32 scalars ``roles``; role :data:`FTZ`: subnormal inputs flushed to zero)."""
    rs = tuple(r for r in roles if r != FTZ)
    if FTZ in roles:
        p0, grads = flush_subnormals(p0, dtype), [flush_subnormals(g, dtype) for g in grads]
    try:
        ref = reference_points(cfg, p0, grads, dtype, arith=ScalarPrecision(cfg, rs) if rs else None)
    except (ConfigError, ValueError, OverflowError, ZeroDivisionError):
        return float("inf")
    bounds = tolerance.step_bounds(cfg, ref, grads, spec, "free")
    return cmp.max_ratio([p.params for p in ref[1:]], got, bounds)


# -- the candidate space ------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One alternative explanation: config ``changes`` and float32 scalar ``roles``.

    ``cause`` is ``knob``, ``flag``, ``profile``, ``precision`` or ``pair``."""

    name: str
    cause: str
    changes: Mapping[str, Any] = field(default_factory=dict)
    roles: tuple[str, ...] = ()

    @property
    def size(self) -> float:
        """How much the candidate changes: one per knob or flag (a profile counts its knobs),
        a role of float32 precision counts 1.5 (a knob is the simpler explanation)."""
        if self.roles == (FTZ,):
            return 1.0  # one arithmetic property, like one knob
        n = float(len(self.changes))
        if self.cause == "flag" and "amsgrad" in self.changes:
            n = 1.0  # AMSGrad on with its mode is one feature
        if self.cause == "flag" and "eps_root" in self.changes:
            n = 1.0
        return n + 1.5 * len(self.roles)


def _fmt_value(v: Any) -> str:
    v = _val(v)
    return str(v).lower() if isinstance(v, bool) else str(v)


def change_name(changes: Mapping[str, Any]) -> str:
    return " + ".join(f"{k}={_fmt_value(v)}" for k, v in changes.items())


def apply(cfg: AdamWConfig, changes: Mapping[str, Any]) -> AdamWConfig | None:
    """``cfg`` with ``changes``, or None when that is not a valid configuration."""
    try:
        return cfg.replace(**changes)
    except ConfigError:
        return None


_apply = apply


def has_frozen(grads: Sequence[Mapping[str, Any]]) -> bool:
    """Whether some parameter misses a step (per-parameter and global counts then differ)."""
    return any(v is None for g in grads for v in g.values())


def _decays(cfg: AdamWConfig, names: Iterable[str]) -> bool:
    return cfg.decay_form is not K.DecayForm.NONE and any(cfg.group_for(n)[1] != 0.0 for n in names)


def effective_key(cfg: AdamWConfig, frozen: bool, names: Iterable[str] = ()) -> tuple[Any, ...]:
    """The algorithm ``cfg`` runs on data with (``frozen``) or without frozen parameters, with
    the knobs that cannot matter there blanked: two configurations with the same key compute
    the same trajectory."""
    d = cfg.to_json()
    d.pop("lr_schedule"), d.pop("wd_schedule"), d.pop("groups")
    names = list(names)
    if not cfg.amsgrad:
        d["amsgrad_mode"] = None
    if not cfg.bias_correction:  # k is unused; eps-hat equals eps when 1 - beta2^k reads as 1
        d["bias_correction_offset"] = d["step_count_scope"] = d["eps_placement"] = None
    if not frozen:
        d["step_count_scope"] = None
    if isinstance(cfg.lr_schedule, Constant) and isinstance(cfg.wd_schedule, Constant):
        d["schedule_count"] = None
    if not _decays(cfg, names or ["_"]):
        d["decay_form"] = d["decay_scaling"] = d["decay_timing"] = None
    if cfg.decay_form in (K.DecayForm.ADDED_TO_UPDATE, K.DecayForm.COUPLED_L2):
        d["decay_timing"] = None
    if cfg.lr_schedule == Constant(1.0) and d["decay_scaling"] == "schedule_multiplier":
        d["decay_scaling"] = "unscaled"  # s = eta * lambda = lambda when eta == 1: the same numbers
    return (tuple(sorted((k, repr(v)) for k, v in d.items())), cfg.lr_schedule, cfg.wd_schedule, cfg.groups)


def knob_candidates(cfg: AdamWConfig) -> list[Candidate]:
    cur = cfg.knobs()
    return [
        Candidate(f"{knob}={_fmt_value(v)}", "knob", {knob: v})
        for knob in KNOB_FIELDS
        for v in KNOB_VALUES[knob]
        if v != cur[knob]
    ]


def single_knob_candidates(cfg: AdamWConfig) -> list[tuple[str, dict[str, Any]]]:
    """(name, changes) of every alternative knob value (kept for callers of the old API)."""
    return [(c.name, dict(c.changes)) for c in knob_candidates(cfg)]


def flag_candidates(cfg: AdamWConfig) -> list[Candidate]:
    """``maximize`` flipped; AMSGrad off, or on in each mode; ``nesterov`` flipped; eps in the
    square root."""
    out = [Candidate(f"maximize={_fmt_value(not cfg.maximize)}", "flag", {"maximize": not cfg.maximize})]
    if cfg.amsgrad:
        out.append(Candidate("amsgrad=false", "flag", {"amsgrad": False}))
    else:
        for mode in KNOB_VALUES["amsgrad_mode"]:
            ch: dict[str, Any] = {"amsgrad": True}
            if mode != _val(cfg.amsgrad_mode):
                ch["amsgrad_mode"] = mode
            out.append(Candidate(change_name(ch), "flag", ch))
    if not cfg.amsgrad or cfg.nesterov:
        out.append(
            Candidate(f"nesterov={_fmt_value(not cfg.nesterov)}", "flag", {"nesterov": not cfg.nesterov})
        )
    if cfg.eps_root == 0.0 and cfg.eps > 0.0:
        out.append(Candidate("eps_root=eps", "flag", {"eps_root": cfg.eps}))
        out.append(Candidate("eps_root=eps^2", "flag", {"eps_root": cfg.eps**2}))
        out.append(Candidate("eps_root=eps + eps=0", "flag", {"eps_root": cfg.eps, "eps": 0.0}))
    elif cfg.eps_root != 0.0:
        out.append(Candidate("eps_root=0", "flag", {"eps_root": 0.0}))
    return out


def profile_candidates(cfg: AdamWConfig) -> list[Candidate]:
    cur = cfg.knobs()
    out = []
    for name, prof in PROFILES.items():
        diff = {k: v for k, v in prof.config.knobs().items() if cur[k] != v}
        if diff:
            out.append(Candidate(f"profile {name}", "profile", diff))
    return out


def precision_candidates() -> list[Candidate]:
    """The single float32 roles and the preset sets (the greedy search extends the best)."""
    sets = [(r,) for r in F32_ROLES] + list(_F32_SETS)
    return [Candidate(precision_name(s), "precision", {}, tuple(s)) for s in sets]


def precision_name(roles: Sequence[str]) -> str:
    return "float32 scalars: " + ", ".join(roles)


def candidate_space(cfg: AdamWConfig, dtype: str = "float64") -> list[Candidate]:
    """Every single candidate the diagnosis scores for a run claiming ``cfg`` in ``dtype``
    (pairs and the greedy float32 sets are formed during the search)."""
    out = knob_candidates(cfg) + flag_candidates(cfg) + profile_candidates(cfg)
    if precision_applies(dtype):
        out += precision_candidates()
    return out


def precision_applies(dtype: str) -> bool:
    """Float32 scalars are beyond the bound only in a binary64 run (in float32 they are the
    dtype's own rounding, which the bound covers)."""
    return dtype == "float64"


def describe(changes: Mapping[str, Any], roles: Sequence[str] = ()) -> str:
    parts = [MEANING.get((k, _val(v)), f"{k}={_fmt_value(v)}") for k, v in changes.items()]
    if FTZ in roles:
        parts.append(
            "subnormal inputs read as zero: flush-to-zero / denormals-are-zero arithmetic (e.g. "
            "XLA and oneDNN CPU kernels)"
        )
        roles = [r for r in roles if r != FTZ]
    if roles:
        parts.append("float32 scalars in a float64 run: " + "; ".join(F32_ROLES[r] for r in roles))
    return "; ".join(parts)


def matching_profiles(cfg: AdamWConfig) -> list[str]:
    kn = cfg.knobs()
    return [n for n, p in PROFILES.items() if p.config.knobs() == kn]


# -- the search ---------------------------------------------------------------------------------


@dataclass
class Scored:
    cand: Candidate
    score: float
    key: tuple[Any, ...]

    @property
    def explains(self) -> bool:
        return self.score <= 1.0


@dataclass
class Search:
    """Scores candidates against one trajectory, once per distinct algorithm."""

    cfg: AdamWConfig
    p0: Mapping[str, Any]
    grads: Sequence[Mapping[str, Any]]
    got: Sequence[Mapping[str, Any]]
    dtype: str
    spec: tolerance.ToleranceSpec
    deadline: float | None = None
    results: list[Scored] = field(default_factory=list)
    _cache: dict[tuple[Any, ...], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.frozen = has_frozen(self.grads)
        self.names = list(self.p0)
        self.base_key = (effective_key(self.cfg, self.frozen, self.names), ())
        self.base = score(self.cfg, self.p0, self.grads, self.got, self.dtype, self.spec)
        self._cache[self.base_key] = self.base

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.perf_counter() > self.deadline

    def consider(self, cand: Candidate) -> Scored | None:
        c = apply(self.cfg, cand.changes)
        if c is None:
            return None
        key = (effective_key(c, self.frozen, self.names), tuple(sorted(cand.roles)))
        if key == self.base_key:
            return None  # cannot change anything here
        if key not in self._cache:
            self._cache[key] = score(c, self.p0, self.grads, self.got, self.dtype, self.spec, cand.roles)
        s = Scored(cand, self._cache[key], key)
        self.results.append(s)
        return s

    def best(self) -> Scored | None:
        return min(self.results, key=lambda x: x.score, default=None)

    def explaining(self) -> list[Scored]:
        ex = [x for x in self.results if x.explains]
        # at equal size the arithmetic (flush-to-zero) before a knob: on subnormal data it is the
        # known cause, and a knob that happens to zero the same tiny steps is listed beside it
        return sorted(
            ex, key=lambda x: (x.cand.size, x.cand.cause == "profile", FTZ not in x.cand.roles, x.score)
        )

    def run(self, pairs: bool = True) -> None:
        for cand in knob_candidates(self.cfg) + flag_candidates(self.cfg) + profile_candidates(self.cfg):
            self.consider(cand)
        if has_subnormals(self.grads, self.dtype):
            self.consider(Candidate("subnormals flushed to zero", "precision", {}, (FTZ,)))
        if precision_applies(self.dtype) and not self.explaining():
            self.precision()
        if pairs and not self.explaining() and not self.out_of_time():
            self.pairs()

    def precision(self) -> None:
        """Single float32 roles, the preset sets, then the best set grown one role at a time
        while that lowers the bound ratio by 2x or more (at most 4 roles)."""
        singles = [s for s in (self.consider(c) for c in precision_candidates()) if s is not None]
        if not singles or any(s.explains for s in singles):
            return
        cur = min(singles, key=lambda s: s.score)
        while len(cur.cand.roles) < 4 and not self.out_of_time():
            grown = [
                self.consider(Candidate(precision_name(rs), "precision", {}, rs))
                for r in F32_ROLES
                if r not in cur.cand.roles
                for rs in [tuple(x for x in F32_ROLES if x in (*cur.cand.roles, r))]
            ]
            nxt = min((g for g in grown if g is not None), key=lambda s: s.score, default=None)
            if nxt is None or nxt.score * 2 > cur.score:
                return
            cur = nxt
            if cur.explains:
                return

    def pairs(self, top: int = 8) -> None:
        """Pairs of the ``top`` best single knob and flag changes (affordable: <= 28 reruns)."""
        singles = sorted(
            (x for x in self.results if x.cand.cause in ("knob", "flag")), key=lambda x: x.score
        )[:top]
        for a, b in itertools.combinations(singles, 2):
            if self.out_of_time():
                return
            if set(a.cand.changes) & set(b.cand.changes):
                continue
            ch = {**a.cand.changes, **b.cand.changes}
            self.consider(Candidate(f"{a.cand.name} + {b.cand.name}", "pair", ch))


def _ratio(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.3g}"


def diagnose(
    cfg: AdamWConfig,
    p0: Mapping[str, Any],
    grads: Sequence[Mapping[str, Any]],
    got: Sequence[Mapping[str, Any]],
    dtype: str,
    spec: tolerance.ToleranceSpec,
    pairs: bool = True,
    time_limit: float | None = None,
) -> dict[str, Any]:
    """The report's ``diagnosis`` object for the free-running trajectory ``got``.

    ``explained_by`` names the simplest explaining candidate (or None); ``kind`` is ``profile``
    or ``knob`` (flags and float32 scalars are reported as ``knob``; ``cause`` says which, and
    ``changes``/``roles`` what the candidate changes); ``residual`` is the bound ratio left by
    the named (or closest) candidate and ``base_ratio`` the one with no change."""
    return diagnose_search(cfg, p0, grads, got, dtype, spec, pairs, time_limit)[0]


def diagnose_search(
    cfg: AdamWConfig,
    p0: Mapping[str, Any],
    grads: Sequence[Mapping[str, Any]],
    got: Sequence[Mapping[str, Any]],
    dtype: str,
    spec: tolerance.ToleranceSpec,
    pairs: bool = True,
    time_limit: float | None = None,
) -> tuple[dict[str, Any], Search]:
    """:func:`diagnose` and the :class:`Search` behind it (every candidate scored)."""
    deadline = None if time_limit is None else time.perf_counter() + time_limit
    s = Search(cfg, p0, grads, got, dtype, spec, deadline)
    s.run(pairs)
    return _verdict(s), s


def _json_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _val(v) for k, v in changes.items()}


def _verdict(s: Search) -> dict[str, Any]:
    cfg, p0, grads, got, dtype = s.cfg, s.p0, s.grads, s.got, s.dtype
    ranked = sorted(s.results, key=lambda x: (not x.explains, x.cand.size, x.score))
    cands = [{"name": x.cand.name, "score": cmp._finite(x.score)} for x in ranked[:8]]
    explaining = s.explaining()
    base = s.base
    if not explaining:
        best = s.best()
        if best is not None and best.score * CLOSEST_FACTOR <= base:
            detail = (
                f"unexplained: no candidate brings the trajectory within the bound; closest: "
                f"{best.cand.name} (bound ratio {_ratio(best.score)}, vs {_ratio(base)} with no "
                f"change: {base / best.score:.3g}x better; {describe(best.cand.changes, best.cand.roles)})"
            )
            residual = best.score
        else:
            detail = f"unexplained: residual bound ratio {_ratio(base)} with no change"
            if best is not None:
                detail += (
                    f"; the best candidate, {best.cand.name}, leaves {_ratio(best.score)} (less "
                    f"than {CLOSEST_FACTOR:g}x better: no candidate accounts for the deviation)"
                )
            residual = base
        detail += _hints(cfg, p0, grads, got, dtype, s.results)
        return {
            "explained_by": None,
            "kind": None,
            "cause": None,
            "changes": None,
            "roles": None,
            "detail": detail,
            "candidates": cands,
            "residual": cmp._finite(residual),
            "base_ratio": cmp._finite(base),
        }
    top = explaining[0]
    c = top.cand
    explained = apply(cfg, c.changes)
    knob_change = any(k in KNOB_FIELDS for k in c.changes)
    profs = matching_profiles(explained) if explained is not None and knob_change and not c.roles else []
    detail = describe(c.changes, c.roles)
    if c.cause == "profile":
        detail = f"matches {c.name}: {detail}"
    elif profs:
        detail += f" (the knobs of profile {', '.join(profs)})"
    others = [x.cand.name for x in explaining[1:] if x.cand.size <= c.size and x.cand.name != c.name]
    if others:
        detail += f"; equally consistent here: {', '.join(others[:4])}"
    also = [
        x.cand.name
        for x in explaining
        if x.cand.cause == "profile" and x.cand.name != c.name and x.cand.name not in others
    ]
    if also:
        detail += f"; also consistent with {', '.join(also[:4])}"
    return {
        "explained_by": c.name,
        "kind": "profile" if c.cause == "profile" else "knob",
        "cause": c.cause,
        "changes": _json_changes(c.changes),
        "roles": list(c.roles),
        "detail": detail,
        "candidates": cands,
        "residual": cmp._finite(top.score),
        "base_ratio": cmp._finite(base),
    }


def _hints(
    cfg: AdamWConfig,
    p0: Mapping[str, Any],
    grads: Sequence[Mapping[str, Any]],
    got: Sequence[Mapping[str, Any]],
    dtype: str,
    scored: Sequence[Scored] = (),
) -> str:
    """Plain-language hints from the error's size and where it happens."""
    from adamw_ref.formats import FORMATS

    ref = reference_points(cfg, p0, grads, dtype)
    max_rel, tiny = 0.0, False
    min_normal = FORMATS[dtype].min_normal
    for pt, g in zip(ref[1:], got):
        for n, e in pt.params.items():
            d = cmp.abs_err(e, np.asarray(g[n], np.float64))
            with np.errstate(all="ignore"):
                r = np.where(d == 0, 0.0, d / np.abs(e))
            if r.size:
                max_rel = max(max_rel, float(np.nanmax(r)))
                bad = d > 0
                tiny |= bool(np.any(bad & (np.abs(e) < min_normal * 2**10)))
    sub_g = any(
        g is not None and bool(np.any((np.abs(gv := round_to(g, dtype)) < min_normal) & (gv != 0)))
        for gs in grads
        for g in gs.values()
    )
    hints = []
    if dtype == "float64" and 1e-8 < max_rel < 1e-3:
        hints.append(
            f"max relative error {max_rel:.2g} is float32-sized, but no float32-scalar candidate "
            "(lr, betas, eps, wd, bias corrections, lr*wd) reproduces it: some other quantity "
            "seems computed in float32"
        )
    if sub_g:
        hints.append(
            f"the gradients contain {dtype} subnormals: consistent with flush-to-zero /"
            " denormals-are-zero arithmetic (e.g. XLA and oneDNN CPU kernels)"
        )
    elif tiny:
        hints.append(
            f"errors occur at (near-)subnormal magnitudes (< 2^10 * {min_normal:.3g}): "
            "consistent with flush-to-zero / denormals-are-zero arithmetic"
        )
    return "".join(f"; hint: {h}" for h in hints)


def acceptable_flag(diagnosis: Mapping[str, Any] | None, cfg: AdamWConfig) -> str | None:
    """The flag when the explaining candidate differs from ``cfg`` by rounding only."""
    if not diagnosis or not diagnosis.get("explained_by") or diagnosis.get("kind") != "knob":
        return None
    if diagnosis.get("cause", "knob") != "knob":
        return None
    name = str(diagnosis["explained_by"])
    if "+" in name or "=" not in name:
        return None
    knob, _, value = name.partition("=")
    return ACCEPTABLE.get((knob, value))


# -- identifiability ------------------------------------------------------------------------------


def separation(
    cfg_a: AdamWConfig,
    cfg_b: AdamWConfig,
    p0: Mapping[str, Any],
    grads: Sequence[Mapping[str, Any]],
    dtype: str,
) -> float:
    """max |theta_a - theta_b| / B_free(a): how many tolerances the two variants lie apart."""
    spec = tolerance.spec_for(dtype, "cpu", "ref_vs_impl")
    ra = reference_points(cfg_a, p0, grads, dtype)
    rb = reference_points(cfg_b, p0, grads, dtype)
    bounds = tolerance.step_bounds(cfg_a, ra, grads, spec, "free")
    return cmp.max_ratio([p.params for p in ra[1:]], [p.params for p in rb[1:]], bounds)


#: Rows of the identifiability table besides the knob-value pairs: (label, value A, value B).
FLAG_ROWS: tuple[tuple[str, dict[str, Any], dict[str, Any]], ...] = (
    ("maximize", {"maximize": False}, {"maximize": True}),
    ("amsgrad", {"amsgrad": False}, {"amsgrad": True}),
    ("nesterov", {"nesterov": False}, {"nesterov": True}),
    ("eps_root", {"eps_root": 0.0}, {"eps_root": 1e-8}),
)


def identifiability(base_profile: str = "torch", seed: int = 0) -> list[dict[str, Any]]:
    from conformance.scenarios import SCENARIOS

    base = PROFILES[base_profile].config
    pairs: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        (knob, {knob: a}, {knob: b})
        for knob in KNOB_FIELDS
        for a, b in itertools.combinations(KNOB_VALUES[knob], 2)
    ]
    pairs += list(FLAG_ROWS)
    rows = []
    for label, cha, chb in pairs:
        best: dict[str, Any] = {
            "knob": label,
            "a": next(iter(cha.values())),
            "b": next(iter(chb.values())),
            "scenario": None,
            "float64": 0.0,
            "float32": 0.0,
            "basic_float32": 0.0,
        }
        for sc in SCENARIOS:
            if "long" in sc.tags:
                continue
            cfg = sc.config(base)
            ca, cb = apply(cfg, cha), apply(cfg, chb)
            if ca is None or cb is None:
                continue
            p0, gs = sc.inputs(seed)
            seps = {}
            for dt in ("float64", "float32"):
                if dt in sc.dtypes:
                    seps[dt] = min(separation(ca, cb, p0, gs, dt), separation(cb, ca, p0, gs, dt))
            s32 = seps.get("float32", 0.0)
            s64 = seps.get("float64", 0.0)
            if sc.id == "basic":
                best["basic_float32"] = s32
            if (s32, s64) > (best["float32"], best["float64"]) or best["scenario"] is None:
                best.update(scenario=sc.id, float64=s64, float32=s32)
        rows.append(best)
    return rows


def _fmt(x: float) -> str:
    return "inf" if x >= 1e300 else f"{x:.3g}"


IDENTIFIABILITY_INTRO = (
    "For each knob (and flag) and each pair of its values, the scenario of the catalogue whose "
    "binary64 reference trajectories (on the same recorded gradients, inputs rounded to the "
    "dtype) lie furthest apart, and that distance in units of the free-running tolerance "
    "bound of [the tolerance model](tolerance.md): "
    r"$\max_{t,i} |\theta^A_{t,i}-\theta^B_{t,i}|/B_{t,i}$, the smaller of the two directions. "
    "A separation $> 1$ means the suite can tell the two values apart in that dtype; "
    r"$\le 1$ means *not identifiable beyond rounding* in that dtype (the diagnosis then lists "
    "both as consistent)."
)

IDENTIFIABILITY_NOTES = (
    "Notes: `decay_form` multiplicative and added_to_update are equal in exact arithmetic "
    r"($\theta(1-s)-\alpha u=\theta-\alpha(u+\lambda\theta)$ with $s=\alpha\lambda$), so they "
    "differ by rounding only: an implementation using either is graded `within_bound` (or "
    "`acceptable` with flag `decay_rounding_order` should the rounding difference ever exceed "
    "the bound). `proximal` and `multiplicative` differ by "
    r"$s^2\theta/(1+s)\approx(\alpha\lambda)^2\theta$ per step to leading order, visible only "
    r"with a large $\alpha\lambda$ (`zero_grad_decay`: $s=0.05$). `decay_scaling` "
    r"schedule_multiplier and unscaled coincide under a constant schedule ($\eta\equiv1$), so "
    "the diagnosis lists both as equally consistent there. `amsgrad_mode` needs "
    "`amsgrad=True` and shrinking gradients; `step_count_scope` needs frozen parameters (and "
    "bias correction on); `schedule_count` needs a non-constant schedule (`long_warmup`: a "
    "20-step warmup, `decay_schedule`: a weight-decay schedule). `decay_timing` is the weakest "
    r"in float32 (after_step differs by $s\,\alpha u$ per step)."
)


def identifiability_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = [
        "| knob | value A | value B | best scenario | separation float64 | separation float32 "
        "| basic float32 | identifiable |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s64, s32 = float(r["float64"]), float(r["float32"])
        if s32 > 1:
            verdict = "yes (float32 and float64)"
        elif s64 > 1:
            verdict = "float64 only"
        else:
            verdict = "not identifiable beyond rounding"
        lines.append(
            f"| {r['knob']} | {_fmt_value(r['a'])} | {_fmt_value(r['b'])} | {r['scenario']} | "
            f"{_fmt(s64)} | {_fmt(s32)} | {_fmt(float(r['basic_float32']))} | {verdict} |"
        )
    return lines


def identifiability_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The separation section of docs/conformance/identifiability.md."""
    lines = [
        "## How far apart the knob values lie",
        "",
        "Generated by `python -m conformance.diagnose --identifiability` (seed 0, base profile "
        "torch); do not edit this section by hand.",
        "",
        IDENTIFIABILITY_INTRO,
        "",
        "The column *basic float32* gives the separation in the plain `basic` scenario "
        r"($\alpha=10^{-2}$, $\lambda=0.1$, constant schedule, no frozen parameters): how "
        "visible the difference is in ordinary training.",
        "",
        *identifiability_table(rows),
        "",
        IDENTIFIABILITY_NOTES,
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m conformance.diagnose")
    ap.add_argument(
        "--identifiability", action="store_true", help="print the identifiability table (markdown)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ns = ap.parse_args(argv)
    if not ns.identifiability:
        ap.print_help()
        return 2
    np.seterr(all="ignore")
    sys.stdout.write(identifiability_markdown(identifiability(seed=ns.seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
