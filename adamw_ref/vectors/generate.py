r"""Generating the vector files: the cases of every profile and their expected values.

The inputs come from seeded :class:`random.Random` streams; expected values come from the reference
(:data:`~adamw_ref.BINARY64_ARITHMETIC` for ``float64`` groups, the exact binary32 emulation for
``float32`` groups). Configuration numbers are JSON numbers written with Python's shortest
round-trip ``repr``, which every correctly rounding JSON parser reads back exactly.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adamw_ref import SPEC_VERSION
from adamw_ref.arithmetic import BINARY32_ARITHMETIC, BINARY64_ARITHMETIC, FloatArithmetic
from adamw_ref.config import AdamWConfig, ParamGroup
from adamw_ref.formats import BINARY32, round_to_format
from adamw_ref.profiles import PROFILES
from adamw_ref.schedules import LinearWarmup
from adamw_ref.step import run_trajectory
from adamw_ref.vectors.encoding import canonical_json, encode_float

GENERATOR_NAME = "adamw_ref.vectors"
GENERATOR_VERSION = "1.0"
SCHEMA_FILE = "vectors.schema.json"
FILE_PATTERN = "adamw_{profile}_test.json"

#: Why a vector exists: a bug-type category, what is tested, and the effect of getting it wrong.
NOTES: dict[str, dict[str, str]] = {
    "BASIC": {
        "bugType": "BASIC",
        "description": "Random gradients of moderate size on a few elements, a few steps.",
        "effect": "Any error in the update rule, the decay or the moments shows up here.",
    },
    "EPS_DOMINATED": {
        "bugType": "EDGE_CASE",
        "description": "Gradients far below eps, so the denominator is dominated by eps.",
        "effect": "Detects eps placement (eps vs eps-hat) and eps values that differ.",
    },
    "ZERO_GRAD": {
        "bugType": "EDGE_CASE",
        "description": "Gradients become exactly zero after some steps; momentum keeps moving.",
        "effect": "Detects implementations that skip zero gradients or reset moments.",
    },
    "WD_ONLY": {
        "bugType": "FUNCTIONALITY",
        "description": "All gradients zero: the update is 0/(0+eps) and only the decay acts.",
        "effect": "Isolates the decay strength s_t (lr*wd, wd, schedule*wd) and its form.",
    },
    "LARGE_STEP_COUNT": {
        "bugType": "EDGE_CASE",
        "description": "Hundreds of steps; expected values listed at intervals.",
        "effect": "Detects step-count off-by-one errors and drift of the bias corrections.",
    },
    "SUBNORMAL": {
        "bugType": "EDGE_CASE",
        "description": "Subnormal gradients whose squares underflow to zero.",
        "effect": "Detects flush-to-zero, reordering that underflows, and v=0 handling.",
    },
    "AMSGRAD": {
        "bugType": "FUNCTIONALITY",
        "description": "AMSGrad on shrinking gradients, so the running maximum is used.",
        "effect": "Detects the max over raw v vs bias-corrected v and a wrong v_max.",
    },
    "MAXIMIZE": {
        "bugType": "FUNCTIONALITY",
        "description": "maximize=True: the gradient is negated before the moments.",
        "effect": "Detects negation in the wrong place (e.g. of the decay as well).",
    },
    "NESTEROV": {
        "bugType": "FUNCTIONALITY",
        "description": "Nesterov momentum (Optax NAdamW form).",
        "effect": "Detects a wrong look-ahead bias correction 1-beta1^(k+1).",
    },
    "FROZEN_PARAM": {
        "bugType": "FUNCTIONALITY",
        "description": "A parameter has no gradient (null) for some steps.",
        "effect": "Detects decay of frozen parameters and the step-count scope (global vs own).",
    },
    "NAN_INF": {
        "bugType": "EDGE_CASE",
        "description": "Infinite and NaN gradient elements, propagated by IEEE-754 rules.",
        "effect": "Detects skipping or sanitising of non-finite gradients, and leaks across elements.",
    },
    "SCHEDULE_COUNT": {
        "bugType": "FUNCTIONALITY",
        "description": "A linear-warmup learning-rate schedule starting at 0.",
        "effect": "Detects which count the schedule sees (pre vs post increment) and whether "
        "the decay follows the schedule.",
    },
    "MASKED_DECAY": {
        "bugType": "FUNCTIONALITY",
        "description": "A parameter group with weight_decay=0 (bias/norm exclusion).",
        "effect": "Detects masks that are ignored or applied to the wrong parameters.",
    },
    "FLOAT32": {
        "bugType": "ARITHMETIC",
        "description": "Binary32 arithmetic: every operation rounded to binary32 in the reference's order.",
        "effect": "Shows the rounding of a float32 implementation; compare with a tolerance.",
    },
}

HEADER = [
    "Test vectors for AdamW as defined by the adamw-ref specification.",
    "Each group fixes a named profile, a full configuration and a dtype; each test gives the",
    "initial parameters, the gradient of every step (null = frozen for that step) and the",
    "expected parameters and optimizer state after the listed steps (index = step number).",
    "Floats are float.hex strings. Expected values were computed by the reference (binary64, or",
    "exact binary32 emulation for float32 groups); implementations computing in another order",
    "agree to within a few ulps per step, not bit for bit.",
]


Vec = dict[str, list[float]]
GradStep = dict[str, list[float] | None]


@dataclass(frozen=True)
class Case:
    """One test before its expected values are computed."""

    flags: tuple[str, ...]
    comment: str
    params: Vec
    grads: tuple[GradStep, ...]
    every: int = 1  # record expected values every ``every`` steps (and at the last step)


def _rng(*key: object) -> random.Random:
    return random.Random(repr(key))


def _gauss(rng: random.Random, n: int, scale: float, dtype: str) -> list[float]:
    out = []
    for _ in range(n):
        x = float(f"{rng.gauss(0.0, 1.0) * scale:.6g}")
        out.append(round_to_format(x, BINARY32) if dtype == "float32" else x)
    return out


def _cases_base(profile: str, dtype: str) -> list[Case]:
    r = _rng(profile, dtype)
    f32 = dtype == "float32"
    w0 = _gauss(r, 3, 1.0, dtype)
    b0 = _gauss(r, 2, 0.5, dtype)
    cases = [
        Case(
            ("BASIC",),
            "random gradients on two parameters",
            {"w": w0, "b": b0},
            tuple({"w": _gauss(r, 3, 0.1, dtype), "b": _gauss(r, 2, 0.1, dtype)} for _ in range(3)),
        ),
        Case(
            ("EPS_DOMINATED",),
            "gradients around 1e-10, far below eps",
            {"w": _gauss(r, 2, 1.0, dtype)},
            tuple({"w": _gauss(r, 2, 1e-10, dtype)} for _ in range(2)),
        ),
    ]
    if f32:
        tiny = [2.0**-140, -(2.0**-145), 2.0**-149]  # binary32 subnormals
        cases.append(
            Case(
                ("SUBNORMAL",),
                "binary32 subnormal gradients; g*g underflows to 0",
                {"w": _gauss(r, 3, 1.0, dtype)},
                tuple({"w": [x * (i + 1) for x in tiny]} for i in range(2)),
            )
        )
        return cases
    cases += [
        Case(
            ("ZERO_GRAD",),
            "one random gradient, then two exact zeros",
            {"w": _gauss(r, 2, 1.0, dtype)},
            ({"w": _gauss(r, 2, 0.1, dtype)}, {"w": [0.0, 0.0]}, {"w": [-0.0, 0.0]}),
        ),
        Case(
            ("WD_ONLY",),
            "all gradients zero: only the decay acts",
            {"w": _gauss(r, 2, 1.0, dtype)},
            tuple({"w": [0.0, 0.0]} for _ in range(2)),
        ),
        Case(
            ("SUBNORMAL",),
            "binary64 subnormal gradients; g*g underflows to 0",
            {"w": _gauss(r, 3, 1.0, dtype)},
            tuple({"w": [1e-310 * (i + 1), -3e-320, 5e-324]} for i in range(2)),
        ),
        Case(
            ("FROZEN_PARAM",),
            "b has no gradient at step 2",
            {"w": _gauss(r, 2, 1.0, dtype), "b": _gauss(r, 1, 1.0, dtype)},
            (
                {"w": _gauss(r, 2, 0.1, dtype), "b": _gauss(r, 1, 0.1, dtype)},
                {"w": _gauss(r, 2, 0.1, dtype), "b": None},
                {"w": _gauss(r, 2, 0.1, dtype), "b": _gauss(r, 1, 0.1, dtype)},
            ),
        ),
        Case(
            ("NAN_INF",),
            "inf and nan gradient elements at step 2; element 2 stays finite",
            {"w": _gauss(r, 3, 1.0, dtype)},
            (
                {"w": _gauss(r, 3, 0.1, dtype)},
                {"w": [math.inf, math.nan, 0.05]},
                {"w": _gauss(r, 3, 0.1, dtype)},
            ),
        ),
    ]
    return cases


def _case_amsgrad(profile: str) -> Case:
    r = _rng(profile, "amsgrad")
    return Case(
        ("AMSGRAD",),
        "gradients shrinking by 10x per step so v_max > v",
        {"w": _gauss(r, 3, 1.0, "float64")},
        tuple({"w": [x * 10.0**-i for x in _gauss(r, 3, 1.0, "float64")]} for i in range(3)),
    )


def _case_simple(profile: str, flag: str, comment: str, steps: int, names: Sequence[str] = ("w",)) -> Case:
    r = _rng(profile, flag)
    params = {n: _gauss(r, 2, 1.0, "float64") for n in names}
    grads: tuple[GradStep, ...] = tuple(
        {n: _gauss(r, 2, 0.1, "float64") for n in names} for _ in range(steps)
    )
    return Case((flag,), comment, params, grads)


def _case_long(profile: str) -> Case:
    r = _rng(profile, "long")
    grads: tuple[GradStep, ...] = tuple({"w": _gauss(r, 1, 0.1, "float64")} for _ in range(200))
    return Case(
        ("LARGE_STEP_COUNT",),
        "200 steps on one element; expected every 50 steps",
        {"w": [1.0]},
        grads,
        every=50,
    )


@dataclass(frozen=True)
class GroupSpec:
    """A test group: a config (hyperparameters on top of a profile), a dtype and its cases."""

    profile: str
    config: AdamWConfig
    dtype: str
    cases: tuple[Case, ...]


def _base_config(profile: str) -> AdamWConfig:
    """The profile's knobs with hyperparameters that make every term visible: lr=1e-2 and a
    weight decay giving a per-step decay strength of 1e-3 (wd=0.1 when it is multiplied by lr,
    1e-3 when it is not)."""
    cfg = PROFILES[profile].config
    wd = 0.1 if cfg.decay_scaling.value == "lr" else 1e-3
    return cfg.replace(lr=1e-2, weight_decay=wd)


#: Feature groups: profile -> [(flag, config change, case factory)].
def _feature_groups(profile: str, base: AdamWConfig) -> list[GroupSpec]:
    out: list[GroupSpec] = []

    def add(cfg: AdamWConfig, *cases: Case) -> None:
        out.append(GroupSpec(profile, cfg, "float64", cases))

    if profile in ("torch", "keras3", "optax", "adam_l2"):
        add(base.replace(amsgrad=True), _case_amsgrad(profile))
    if profile == "torch":
        add(
            base.replace(maximize=True),
            _case_simple(profile, "MAXIMIZE", "maximize=True on random gradients", 3),
        )
    if profile == "optax":
        add(
            base.replace(nesterov=True),
            _case_simple(profile, "NESTEROV", "optax.nadamw form on random gradients", 3),
        )
    if profile in ("torch", "keras3", "optax", "paper", "mlx", "tfa"):
        add(
            base.replace(lr_schedule=LinearWarmup(warmup_steps=4)),
            _case_simple(profile, "SCHEDULE_COUNT", "linear warmup over 4 counts from 0", 5),
        )
    if profile in ("torch", "keras3", "optax", "mlx"):
        add(
            base.replace(groups=(ParamGroup(names=("b",), weight_decay=0.0),)),
            _case_simple(profile, "MASKED_DECAY", "b is excluded from decay", 3, ("w", "b")),
        )
    if profile in ("torch", "keras3"):
        add(base, _case_long(profile))
    return out


def group_specs(profile: str) -> list[GroupSpec]:
    """Every group of the vector file for ``profile``."""
    base = _base_config(profile)
    return [
        GroupSpec(profile, base, "float64", tuple(_cases_base(profile, "float64"))),
        GroupSpec(profile, base, "float32", tuple(_cases_base(profile, "float32"))),
        *_feature_groups(profile, base),
    ]


def _enc_map(d: Mapping[str, Sequence[float]]) -> dict[str, list[str]]:
    return {k: [encode_float(float(x)) for x in vs] for k, vs in d.items()}


def _expected(case: Case, config: AdamWConfig, arith: FloatArithmetic) -> list[dict[str, Any]]:
    traj = run_trajectory(case.params, case.grads, config, arith)
    n = len(case.grads)
    out = []
    for t in range(1, n + 1):
        if t % case.every and t != n:
            continue
        st = traj.states[t]
        entry: dict[str, Any] = {
            "step": t,
            "params": _enc_map(traj.params[t]),
            "m": _enc_map(st.m),
            "v": _enc_map(st.v),
            "paramSteps": dict(st.param_steps),
        }
        if st.v_max is not None:
            entry["vMax"] = _enc_map(st.v_max)
        out.append(entry)
    return out


def _grads_json(grads: Sequence[GradStep]) -> list[dict[str, list[str] | None]]:
    return [
        {k: None if g is None else [encode_float(float(x)) for x in g] for k, g in step.items()}
        for step in grads
    ]


def build_file(profile: str) -> dict[str, Any]:
    """The JSON document of the vector file for ``profile``."""
    import adamw_ref

    groups = []
    tc_id = 0
    used: set[str] = set()
    for spec in group_specs(profile):
        arith = BINARY32_ARITHMETIC if spec.dtype == "float32" else BINARY64_ARITHMETIC
        tests = []
        for case in spec.cases:
            tc_id += 1
            flags = [*case.flags, *(["FLOAT32"] if spec.dtype == "float32" else [])]
            used.update(flags)
            tests.append(
                {
                    "tcId": tc_id,
                    "comment": case.comment,
                    "flags": flags,
                    "params": _enc_map(case.params),
                    "grads": _grads_json(case.grads),
                    "expected": _expected(case, spec.config, arith),
                }
            )
        groups.append(
            {
                "type": "AdamWTrajectory",
                "profile": profile,
                "dtype": spec.dtype,
                "arithmetic": "binary64" if spec.dtype == "float64" else "binary32 (exact emulation)",
                "config": spec.config.to_json(),
                "generator": {"name": GENERATOR_NAME, "version": GENERATOR_VERSION},
                "reference": {"name": "adamw-ref", "version": adamw_ref.__version__},
                "tests": tests,
            }
        )
    return {
        "algorithm": "AdamW",
        "profile": profile,
        "profileTitle": PROFILES[profile].title,
        "specVersion": SPEC_VERSION,
        "schema": SCHEMA_FILE,
        "generatorVersion": GENERATOR_VERSION,
        "numberOfTests": tc_id,
        "header": HEADER,
        "notes": {k: NOTES[k] for k in sorted(used)},
        "testGroups": groups,
    }


def generate(out_dir: Path) -> list[Path]:
    """Write one canonical file per profile into ``out_dir``; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for profile in sorted(PROFILES):
        path = out_dir / FILE_PATTERN.format(profile=profile)
        text = canonical_json(build_file(profile))
        if not path.exists() or path.read_text(encoding="ascii") != text:
            path.write_text(text, encoding="ascii", newline="\n")
        written.append(path)
    return written
