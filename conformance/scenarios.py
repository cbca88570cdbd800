"""The scenario catalogue: what each case feeds an implementation, and why it exists.

A :class:`Scenario` fixes parameter shapes and their initial scale, a gradient generator
(:mod:`conformance.gradients`), hyperparameter overrides applied on top of the adapter's profile
(knobs are never overridden: they are what is being tested), the dtypes it runs in, the adapter
features it needs (an adapter lacking one is *skipped* with the reason) and tags:

* ``default``: run by ``adamw-conformance run``; ``quick``: the smallest useful subset;
* ``long``: 10 000+ steps (only with ``--full``); ``full``: everything;
* ``probe``: the short trajectories ``adamw-conformance identify`` fingerprints an optimizer with
  (:mod:`conformance.identify`): between them every knob and flag is visible beyond the float64
  bound (docs/conformance/identifiability.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from adamw_ref import AdamWConfig
from conformance import gradients

_W = {"w": (6, 4), "b": (4,)}


@dataclass(frozen=True)
class Scenario:
    id: str
    description: str
    why: str
    steps: int
    gradient: str
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=lambda: dict(_W))
    init_scale: float = 1.0
    init_offset: float = 0.0
    grad_kwargs: Mapping[str, Any] = field(default_factory=dict)
    overrides: Mapping[str, Any] = field(default_factory=dict)
    no_decay: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ("float64", "float32")
    features: tuple[str, ...] = ()
    tags: frozenset[str] = frozenset({"default", "full"})
    teacher_forced: bool = True

    def config(self, base: AdamWConfig) -> AdamWConfig:
        """``base`` (the profile's config) with this scenario's hyperparameter overrides."""
        cfg = AdamWConfig.from_json(dict(self.overrides), base)
        return cfg.exclude_from_decay(self.no_decay) if self.no_decay else cfg

    def inputs(self, seed: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Initial parameters and the recorded gradient stream (float64, deterministic)."""
        rng = gradients.rng_for(self.id, seed)
        p0 = gradients.initial_params(rng, self.shapes, self.init_scale, self.init_offset)
        gs = gradients.stream(self.gradient, rng, self.shapes, self.steps, **self.grad_kwargs)
        return p0, gs

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "description": self.description,
            "why": self.why,
            "steps": self.steps,
            "gradient": self.gradient,
            "grad_kwargs": dict(self.grad_kwargs),
            "shapes": {k: list(v) for k, v in self.shapes.items()},
            "init_scale": self.init_scale,
            "overrides": dict(self.overrides),
            "no_decay": list(self.no_decay),
            "dtypes": list(self.dtypes),
            "features": list(self.features),
            "tags": sorted(self.tags),
        }


_D = frozenset({"default", "full"})
_Q = frozenset({"default", "quick", "full"})
_FULL = frozenset({"full"})
_LONG = frozenset({"long", "full"})
_QP = frozenset({"default", "quick", "full", "probe"})
_DP = frozenset({"default", "full", "probe"})
_FP = frozenset({"full", "probe"})
_LARGE = frozenset({"large", "full"})
_HP = {"lr": 1e-2, "weight_decay": 0.1}

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "basic",
        "Gaussian gradients with drift, lr=1e-2, wd=0.1, 40 steps.",
        "Wiring check; separates decay scaling, coupled L2, bias-correction offset.",
        40,
        "normal",
        overrides=_HP,
        tags=_QP,
    ),
    Scenario(
        "zero_grad_decay",
        "Zero data gradient: pure decay, lr=0.1, wd=0.5 (s=0.05).",
        "Decay alone: theta_t=(1-s)^t theta_0 (half-life ln2/s ~ 13.5 steps); separates "
        "proximal vs multiplicative (O(s^2) per step) and decay scaling.",
        30,
        "zero",
        overrides={"lr": 0.1, "weight_decay": 0.5},
        tags=_QP,
    ),
    Scenario(
        "null_space",
        "25% of elements never receive a non-zero gradient.",
        "Zero gradient components: m=v=0 there, u=0/(0+eps)=0, only decay moves them.",
        30,
        "nullspace",
        overrides=_HP,
        tags=_FULL,
    ),
    Scenario(
        "sign_flip",
        "Gradient +-1 flipping sign every 5 steps.",
        "Momentum overshoot: m lags g and changes sign after the gradient does.",
        30,
        "sign_flip",
        overrides=_HP,
        tags=_FULL,
    ),
    Scenario(
        "eps_dominated",
        "Gradients ~1e-9 so sqrt(v_hat) ~ eps.",
        "v near 0: the update is governed by eps; separates eps placement (eps vs eps-hat) and eps_root.",
        30,
        "normal",
        grad_kwargs={"scale": 1e-9},
        overrides={"lr": 1e-2, "weight_decay": 0.1, "eps": 1e-8},
        tags=_QP,
    ),
    Scenario(
        "large_eps",
        "eps=1e-3 with gradients ~1e-3.",
        "Large eps (common in RL/mixed precision): eps placement changes the step ~2x early.",
        30,
        "normal",
        grad_kwargs={"scale": 1e-3},
        overrides={"lr": 1e-2, "weight_decay": 0.1, "eps": 1e-3},
        tags=_DP,
    ),
    Scenario(
        "large_grads",
        "Gradients of magnitude 1e4.",
        "Large accumulated v: scale invariance of u, no overflow in g^2 (float32 ok).",
        30,
        "normal",
        grad_kwargs={"scale": 1e4},
        overrides=_HP,
        tags=_FULL,
    ),
    Scenario(
        "warmup_cosine",
        "Linear warmup (5) then cosine to 0.1 at 30; lr=3e-2, wd=0.1.",
        "Schedules: separates schedule count (pre/post increment) and decay scaling "
        "(lr vs schedule multiplier vs unscaled).",
        30,
        "normal",
        overrides={
            "lr": 3e-2,
            "weight_decay": 0.1,
            "lr_schedule": {"kind": "warmup_cosine", "warmup_steps": 5, "total_steps": 30, "final": 0.1},
        },
        features=("lr_schedule",),
        tags=_QP,
    ),
    Scenario(
        "long_warmup",
        "Linear warmup over 20 of 30 steps, lr=5e-2, wd=0.2.",
        "A long warmup: the pre- and post-increment schedule counts differ by lr/20 at each of "
        "20 steps, beyond the bound in float32 and float64 (schedule_count on the learning rate; "
        "decay scaling lr vs schedule multiplier vs unscaled while eta < 1).",
        30,
        "normal",
        overrides={
            "lr": 5e-2,
            "weight_decay": 0.2,
            "lr_schedule": {"kind": "linear_warmup", "warmup_steps": 20},
        },
        features=("lr_schedule",),
        tags=_FP,
    ),
    Scenario(
        "decay_schedule",
        "Constant lr=5e-2; weight-decay schedule: cosine from 1 to 0 over 30 steps, wd=0.5.",
        "The decay strength follows its own schedule: schedule_count shows on the decay alone "
        "(the lr is constant), and lr vs schedule-multiplier decay scaling differ by the factor lr.",
        30,
        "zero",
        init_scale=10.0,
        overrides={
            "lr": 5e-2,
            "weight_decay": 0.5,
            "wd_schedule": {"kind": "cosine", "total_steps": 30},
        },
        features=("wd_schedule",),
        tags=_FP,
    ),
    Scenario(
        "delayed_decay",
        "Weight decay schedule 0 until step 10 (after warmup), then 1.",
        "Decay delayed until after warmup (wd schedule); the lr schedule warms up too.",
        30,
        "normal",
        overrides={
            "lr": 1e-2,
            "weight_decay": 0.2,
            "lr_schedule": {"kind": "linear_warmup", "warmup_steps": 10},
            "wd_schedule": {"kind": "delayed", "until": 10},
        },
        features=("lr_schedule", "wd_schedule"),
    ),
    Scenario(
        "masked_decay",
        "Bias 'b' excluded from decay (parameter group wd=0).",
        "Masked decay (biases/norms excluded) through parameter groups.",
        30,
        "normal",
        overrides=_HP,
        no_decay=("b",),
        features=("groups",),
    ),
    Scenario(
        "finetune_decay",
        "Large 'pretrained' weights (~10), 10 steps of pure decay, then "
        "fine-tuning gradients; lr=5e-2, wd=0.3.",
        "Pure-decay warm-up before fine-tuning: decay dominates; first steps with "
        "m=v=0 then a gradient onset.",
        30,
        "decay_then_normal",
        init_scale=10.0,
        grad_kwargs={"quiet": 10},
        overrides={"lr": 5e-2, "weight_decay": 0.3},
        tags=_DP,
    ),
    Scenario(
        "amsgrad",
        "AMSGrad with shrinking gradients (v decreases).",
        "The running maximum is active: separates raw_v vs bias_corrected_v maxima.",
        40,
        "decreasing",
        grad_kwargs={"decay": 0.85},
        overrides={"lr": 1e-2, "weight_decay": 0.1, "amsgrad": True},
        features=("amsgrad",),
        tags=_QP,
    ),
    Scenario(
        "shrinking_grads",
        "Gradients shrinking by 0.85 per step, beta2=0.9, no AMSGrad.",
        "v follows the shrinking g^2 (beta2=0.9: v halves every ~3 steps): an implementation that "
        "keeps AMSGrad's running maximum anyway takes visibly smaller steps, in float32 too.",
        40,
        "decreasing",
        grad_kwargs={"decay": 0.85},
        overrides={"lr": 1e-2, "weight_decay": 0.1, "beta2": 0.9},
        tags=_FP,
    ),
    Scenario(
        "maximize",
        "maximize=True (gradient ascent).",
        "The sign flip happens before the moments; decay still shrinks theta.",
        20,
        "normal",
        overrides={**_HP, "maximize": True},
        features=("maximize",),
        tags=_DP,
    ),
    Scenario(
        "frozen",
        "Parameter 'frozen' has no gradient on odd steps; 'late' none for 5.",
        "Frozen params (None): nothing changes; separates per-parameter vs global step "
        "count in bias correction.",
        20,
        "frozen",
        shapes={"w": (3, 2), "frozen": (4,), "late": (2,)},
        overrides=_HP,
        features=("frozen",),
        tags=_QP,
    ),
    Scenario(
        "scalar_and_empty",
        "A 0-d parameter and a zero-size parameter beside a vector.",
        "Shape edge cases: scalars and empty tensors must not crash or be skipped.",
        10,
        "normal",
        shapes={"s": (), "e": (0,), "w": (3,)},
        overrides=_HP,
    ),
    Scenario(
        "tiny_magnitudes",
        "Parameters ~1e-30, gradients ~1e-40 (float32 subnormals).",
        "Subnormal inputs: flush-to-zero or loss of gradual underflow shows up here.",
        20,
        "normal",
        init_scale=1e-30,
        grad_kwargs={"scale": 1e-40},
        overrides=_HP,
        dtypes=("float32",),
        teacher_forced=False,
    ),
    Scenario(
        "huge_magnitudes",
        "Parameters ~1e30, gradients ~1e18 (g^2 ~ 1e36 < float32 max).",
        "Huge magnitudes: no spurious overflow in v or in the decay product.",
        20,
        "normal",
        init_scale=1e30,
        grad_kwargs={"scale": 1e18},
        overrides=_HP,
        dtypes=("float32", "float64"),
        teacher_forced=False,
        tags=_FULL,
    ),
    Scenario(
        "low_precision",
        "bfloat16 and float16 parameters, lr=1e-2.",
        "Half-precision storage: every operation rounded to 8 (bf16) / 11 (fp16) bits.",
        20,
        "normal",
        overrides=_HP,
        dtypes=("bfloat16", "float16"),
        teacher_forced=False,
    ),
    Scenario(
        "long_run",
        "10 000 steps, lr=1e-3.",
        "beta^t underflows to 0 (bias correction -> 1); rounding accumulates over a long trajectory.",
        10_000,
        "normal",
        shapes={"w": (8,)},
        overrides={"lr": 1e-3, "weight_decay": 0.01},
        tags=_LONG,
        teacher_forced=False,
    ),
    Scenario(
        "large",
        "About 1.07 million parameters in three tensors of awkward sizes, 20 steps, float32.",
        "Vectorised kernels take other code paths at scale (SIMD tails of odd sizes, alignment, "
        "multi-threaded chunks): a 1024x1023 matrix, a 1021-vector and a 47,003-vector (primes "
        "and non-multiples of every vector width) check them where they happen.",
        20,
        "normal",
        shapes={"w": (1024, 1023), "b": (1021,), "e": (47_003,)},
        overrides=_HP,
        dtypes=("float32",),
        tags=_LARGE,
        teacher_forced=False,
    ),
)

BY_ID: dict[str, Scenario] = {s.id: s for s in SCENARIOS}


def get(scenario_id: str) -> Scenario:
    try:
        return BY_ID[scenario_id]
    except KeyError:
        raise ValueError(f"scenario={scenario_id!r}: unknown; expected one of {sorted(BY_ID)}") from None


def select(ids: list[str] | None = None, *, quick: bool = False, full: bool = False) -> list[Scenario]:
    """Scenarios by id, else the quick / default / full set."""
    if ids:
        return [get(i) for i in ids]
    tag = "quick" if quick else ("full" if full else "default")
    return [s for s in SCENARIOS if tag in s.tags]
