"""Profiles: each one's defaults and knob values against an independent statement of the
implementation (docs/../implementations.md), and, where the package is installed, against its
source read with ``ast`` (no framework import, so this stays fast)."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from typing import Any

import pytest

from adamw_ref import PROFILES, AdamWConfig, get_profile

# name -> (lr, eps, weight_decay, knob values that differ from the torch-like base), written from
# the implementations' documentation (shared/reference/implementations.md section 5).
EXPECTED: dict[str, tuple[float, float, float, dict[str, Any]]] = {
    "torch": (1e-3, 1e-8, 1e-2, {"step_count_scope": "per_parameter"}),
    "keras3": (1e-3, 1e-7, 4e-3, {"eps_placement": "before_bias_correction"}),
    "tf_keras": (1e-3, 1e-7, 4e-3, {"eps_placement": "before_bias_correction"}),
    "optax": (1e-3, 1e-8, 1e-4, {"decay_form": "added_to_update", "amsgrad_mode": "bias_corrected_v"}),
    "paper": (1e-3, 1e-8, 1e-2, {"decay_scaling": "schedule_multiplier", "schedule_count": "post_increment"}),
    "tfa": (1e-3, 1e-7, 1e-2, {"eps_placement": "before_bias_correction", "decay_scaling": "unscaled"}),
    "hf_legacy": (
        1e-3,
        1e-6,
        0.0,
        {
            "eps_placement": "before_bias_correction",
            "decay_timing": "after_step",
            "step_count_scope": "per_parameter",
        },
    ),
    "onnx": (
        1e-3,
        1e-6,
        0.0,
        {
            "eps_placement": "before_bias_correction",
            "decay_scaling": "unscaled",
            "decay_timing": "after_step",
        },
    ),
    "mlx": (1e-3, 1e-8, 1e-2, {"bias_correction": False}),
    "tinygrad": (1e-3, 1e-8, 1e-2, {"decay_form": "added_to_update"}),
    "apex": (1e-3, 1e-8, 0.0, {"decay_form": "added_to_update"}),
    "optimisers_jl": (1e-3, 1e-8, 0.0, {"decay_form": "added_to_update"}),
    "optimisers_jl_decoupled": (
        1e-3,
        1e-8,
        0.0,
        {"decay_form": "added_to_update", "decay_scaling": "unscaled"},
    ),
    "proximal": (1e-3, 1e-8, 1e-2, {"decay_form": "proximal", "decay_timing": "after_step"}),
    "adam_l2": (1e-3, 1e-8, 1e-2, {"decay_form": "coupled_l2", "step_count_scope": "per_parameter"}),
}

BASE_KNOBS = {
    "eps_placement": "after_bias_correction",
    "decay_scaling": "lr",
    "decay_form": "multiplicative",
    "decay_timing": "before_step",
    "bias_correction": True,
    "amsgrad_mode": "raw_v",
    "schedule_count": "pre_increment",
    "step_count_scope": "global",
    "bias_correction_offset": 0,
}


def test_every_profile_is_listed_here() -> None:
    assert set(PROFILES) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_profile_defaults_and_knobs(name: str) -> None:
    lr, eps, wd, knobs = EXPECTED[name]
    p = get_profile(name)
    c = p.config
    assert (c.lr, c.eps, c.weight_decay, c.beta1, c.beta2) == (lr, eps, wd, 0.9, 0.999)
    assert c.knobs() == {**BASE_KNOBS, **knobs}
    assert not c.amsgrad and not c.maximize and not c.nesterov and c.eps_root == 0.0
    assert p.source and p.implementations and p.title
    # JSON round trip of the profile's config is exact
    assert AdamWConfig.from_json(c.to_json()) == c


def test_required_arguments() -> None:
    # optax.adamw and mlx AdamW have no default learning rate; the paper and TF-Addons none for
    # the decay coefficient.
    assert get_profile("optax").required == ("lr",)
    assert get_profile("mlx").required == ("lr",)
    assert get_profile("paper").required == ("weight_decay",)
    assert get_profile("tfa").required == ("weight_decay",)


def _package_file(package: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)  # locates without importing the package
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{package} is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.exists():
        pytest.skip(f"{path} not found in this {package} version")
    return path


def _defaults(path: Path, func: str, cls: str | None = None) -> dict[str, Any]:
    """Literal default values of ``cls.func`` (or module-level ``func``) in a source file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    scope: list[ast.stmt] = tree.body
    if cls is not None:
        scope = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls).body
    fn = next(n for n in scope if isinstance(n, ast.FunctionDef) and n.name == func)
    args = fn.args
    out: dict[str, Any] = {}
    pos = args.posonlyargs + args.args
    for a, d in zip(pos[len(pos) - len(args.defaults) :], args.defaults):
        out[a.arg] = (
            ast.literal_eval(d) if isinstance(d, (ast.Constant, ast.Tuple, ast.List, ast.UnaryOp)) else None
        )
    for a, d in zip(args.kwonlyargs, args.kw_defaults):
        if d is not None and isinstance(d, ast.Constant):
            out[a.arg] = d.value
    return out


def test_torch_source() -> None:
    d = _defaults(_package_file("torch", "optim/adamw.py"), "__init__", "AdamW")
    c = get_profile("torch").config
    assert (d["lr"], d["betas"], d["eps"], d["weight_decay"], d["amsgrad"]) == (
        c.lr,
        (c.beta1, c.beta2),
        c.eps,
        c.weight_decay,
        c.amsgrad,
    )
    src = _package_file("torch", "optim/adam.py").read_text()
    assert "param.mul_(1 - lr * weight_decay)" in src  # multiplicative, lr-scaled, before step
    assert "grad = grad.add(param, alpha=weight_decay)" in src  # Adam: coupled L2 (adam_l2)
    assert "denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)" in src  # eps after BC


def test_keras_source() -> None:
    d = _defaults(_package_file("keras", "src/optimizers/adamw.py"), "__init__", "AdamW")
    c = get_profile("keras3").config
    assert (d["learning_rate"], d["weight_decay"], d["beta_1"], d["beta_2"], d["epsilon"]) == (
        c.lr,
        c.weight_decay,
        c.beta1,
        c.beta2,
        c.eps,
    )
    adam = _package_file("keras", "src/optimizers/adam.py").read_text()
    assert "alpha = lr * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)" in adam  # eps hat
    assert "ops.add(ops.sqrt(v), self.epsilon)" in adam
    base = _package_file("keras", "src/optimizers/base_optimizer.py").read_text()
    assert "variable.assign(variable - variable * wd * lr)" in base


def test_optax_source() -> None:
    d = _defaults(_package_file("optax", "_src/alias.py"), "adamw")
    c = get_profile("optax").config
    assert "learning_rate" not in d  # required
    assert (d["b1"], d["b2"], d["eps"], d["eps_root"], d["weight_decay"], d["nesterov"]) == (
        c.beta1,
        c.beta2,
        c.eps,
        c.eps_root,
        c.weight_decay,
        c.nesterov,
    )
    transform = _package_file("optax", "_src/transform.py").read_text()
    assert "bias_correction_nu: bool = True" in transform  # optax.amsgrad maxes nu_hat


def test_mlx_source() -> None:
    path = _package_file("mlx", "optimizers/optimizers.py")
    d = _defaults(path, "__init__", "AdamW")
    c = get_profile("mlx").config
    assert "learning_rate" not in d
    assert (d["betas"], d["eps"], d["weight_decay"], d["bias_correction"]) == (
        [c.beta1, c.beta2],
        c.eps,
        c.weight_decay,
        c.bias_correction,
    )
    assert "parameter * (1 - lr * self.weight_decay)" in path.read_text()


def test_spec_documents_every_profile_and_knob_value() -> None:
    # docs/spec.md must name every profile and every knob value the code knows
    from enum import Enum

    from adamw_ref import KNOB_FIELDS

    spec = (Path(__file__).resolve().parents[2] / "docs" / "spec.md").read_text()
    for name in PROFILES:
        assert f"`{name}`" in spec, name
    base = AdamWConfig()
    for knob in KNOB_FIELDS:
        assert f"`{knob}`" in spec, knob
        value = getattr(base, knob)
        if isinstance(value, Enum):
            for member in type(value):
                assert f"`{member.value}`" in spec, (knob, member.value)
