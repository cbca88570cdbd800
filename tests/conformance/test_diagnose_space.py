"""The diagnosis searches the whole space: flags, offsets, float32 scalars, and says "unexplained".

Independent knowledge used: a float64 implementation that stores a hyperparameter in float32
computes with ``float(np.float32(x))`` (IEEE round-to-nearest, here taken from numpy, not from the
code under test); the planted numpy optimizers of ``planted_numpy.py`` are written from the update
equations (torch's AdamW), not from the reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from adamw_ref import get_profile
from adapters.reference.adapter import planted_adapter
from conformance import diagnose as dg
from conformance import tolerance
from conformance.execute import CaseSpec, Executor
from conformance.scenarios import get
from tests.conformance import planted_numpy as pn

TORCH = get_profile("torch").config


def _trajectory(cls: type, scenario: str, dtype: str = "float64", **hp: Any) -> tuple[Any, ...]:
    """Run a numpy optimizer of the planted_numpy protocol directly (no adapter in between)."""
    sc = get(scenario)
    cfg = sc.config(TORCH)
    p0, grads = sc.inputs(0)
    opt = cls(
        {k: np.asarray(v, dtype) for k, v in p0.items()},
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        amsgrad=cfg.amsgrad,
        maximize=cfg.maximize,
        **hp,
    )
    got = []
    for g in grads:
        opt.step({k: None if v is None else np.asarray(v, dtype) for k, v in g.items()})
        got.append({k: np.asarray(v, np.float64) for k, v in opt.params.items()})
    return cfg, p0, grads, got


def test_the_candidate_space_holds_flags_offsets_profiles_and_float32_scalars() -> None:
    names = {c.name for c in dg.candidate_space(TORCH, "float64")}
    for expected in (
        "maximize=true",
        "amsgrad=true",
        "amsgrad=true + amsgrad_mode=bias_corrected_v",
        "nesterov=true",
        "eps_root=eps",
        "schedule_count=post_increment",
        "bias_correction_offset=1",
        "bias_correction_offset=2",
        "step_count_scope=global",
        "profile keras3",
        "float32 scalars: lr",
        "float32 scalars: beta_in_bias_correction",
    ):
        assert expected in names, expected
    assert not any(c.cause == "precision" for c in dg.candidate_space(TORCH, "float32"))


def test_irrelevant_knobs_are_merged_with_the_config_they_equal() -> None:
    base = TORCH.replace(amsgrad=False)
    # AMSGrad's mode without AMSGrad, the scope without frozen parameters: the same algorithm
    assert dg.effective_key(base.replace(amsgrad_mode="bias_corrected_v"), False) == dg.effective_key(
        base, False
    )
    assert dg.effective_key(base.replace(step_count_scope="global"), False) == dg.effective_key(base, False)
    assert dg.effective_key(base.replace(step_count_scope="global"), True) != dg.effective_key(base, True)
    assert dg.effective_key(base.replace(schedule_count="post_increment"), False) == dg.effective_key(
        base, False
    )


@pytest.mark.parametrize(
    ("cls", "expected"),
    [
        (pn.Plant_maximize_true, {"maximize": True}),
        (pn.Plant_amsgrad_true, {"amsgrad": True}),
        (pn.Plant_bias_correction_offset_2, {"bias_correction_offset": 2}),
        (pn.Plant_eps_root_1em08, {"eps_root": 1e-8}),
    ],
)
def test_flags_and_offsets_are_named(cls: type, expected: dict[str, Any]) -> None:
    scenario = "shrinking_grads" if expected.get("amsgrad") else "eps_dominated"
    cfg, p0, grads, got = _trajectory(cls, scenario)
    diag = dg.diagnose(cfg, p0, grads, got, "float64", tolerance.spec_for("float64"))
    assert diag["explained_by"] is not None, diag["detail"]
    named = dg.apply(cfg, diag["changes"])
    planted = cfg.replace(**expected)
    assert named is not None
    assert dg.effective_key(named, False, list(p0)) == dg.effective_key(planted, False, list(p0)), diag


class _F32Lr(pn.Honest):
    """A float64 optimizer that keeps lr in float32 (what MLX does)."""

    def __init__(self, params: Any, lr: float = 1e-3, **kw: Any) -> None:
        super().__init__(params, lr=float(np.float32(lr)), **kw)


class _F32Wd(pn.Honest):
    """A float64 optimizer that keeps weight_decay in float32 (what Keras on torch does)."""

    def __init__(self, params: Any, weight_decay: float = 1e-2, **kw: Any) -> None:
        super().__init__(params, weight_decay=float(np.float32(weight_decay)), **kw)


@pytest.mark.parametrize(("cls", "role"), [(_F32Lr, "lr"), (_F32Wd, "weight_decay")])
def test_a_float32_scalar_in_a_float64_run_is_named(cls: type, role: str) -> None:
    cfg, p0, grads, got = _trajectory(cls, "basic")
    spec = tolerance.spec_for("float64")
    assert dg.score(cfg, p0, grads, got, "float64", spec) > 1  # the bound sees it ...
    diag = dg.diagnose(cfg, p0, grads, got, "float64", spec)
    assert diag["explained_by"] == f"float32 scalars: {role}", diag["detail"]  # ... and names it
    assert diag["cause"] == "precision" and diag["kind"] == "knob" and diag["roles"] == [role]


def test_nothing_close_says_unexplained_with_the_residual() -> None:
    cfg, p0, grads, got = _trajectory(pn.Honest, "basic")
    rng = np.random.default_rng(0)
    noisy = [{k: v * (1 + 1e-6 * rng.standard_normal(v.shape)) for k, v in g.items()} for g in got]
    diag = dg.diagnose(cfg, p0, grads, noisy, "float64", tolerance.spec_for("float64"))
    assert diag["explained_by"] is None
    assert diag["detail"].startswith("unexplained: residual bound ratio")
    assert "closest" not in diag["detail"]
    assert diag["residual"] == pytest.approx(diag["base_ratio"]) and diag["residual"] > 1


def test_closest_is_shown_only_when_it_is_factor_better() -> None:
    # proximal decay planted, plus noise 100x below the plant's own effect: proximal is closest
    ad = planted_adapter("decay_form", "proximal")
    ex = Executor(ad, diagnose=False)
    case = ex.run(CaseSpec("p", "emulated", "cpu", "float64", "zero_grad_decay", "free", 0))
    assert case["verdict"] == "divergent" and ex.last_trajectory is not None
    sc = get("zero_grad_decay")
    cfg = sc.config(TORCH)
    p0, grads = sc.inputs(0)
    spec = tolerance.spec_for("float64")
    base = dg.score(cfg, p0, grads, ex.last_trajectory, "float64", spec)
    rng = np.random.default_rng(1)
    bounds = tolerance.step_bounds(cfg, dg.reference_points(cfg, p0, grads, "float64"), grads, spec, "free")
    noise = [
        {k: v + 3 * b[k] * np.sign(rng.standard_normal(v.shape)) for k, v in g.items()}
        for g, b in zip(ex.last_trajectory, bounds)
    ]
    diag = dg.diagnose(cfg, p0, grads, noise, "float64", spec)
    assert diag["explained_by"] is None and base > dg.CLOSEST_FACTOR * 3
    assert "closest: decay_form=proximal" in diag["detail"], diag["detail"]


def test_the_time_limit_keeps_the_search_bounded() -> None:
    cfg, p0, grads, got = _trajectory(pn.Plant_maximize_true, "basic")
    diag = dg.diagnose(cfg, p0, grads, got, "float64", tolerance.spec_for("float64"), time_limit=0.0)
    assert diag["explained_by"] == "maximize=true"  # singles always run; pairs/greedy are cut


class _DenormalsAreZero(pn.Honest):
    """Reads subnormal gradients as 0 (DAZ, as XLA's CPU kernels do), computing in float32."""

    def step(self, grads: dict[str, Any]) -> None:
        tiny = np.finfo(np.float32).tiny
        super().step(
            {
                k: None if g is None else np.where(np.abs(g) < tiny, 0, g).astype(g.dtype)
                for k, g in grads.items()
            }
        )


def test_flush_to_zero_is_named_on_subnormal_gradients() -> None:
    cfg, p0, grads, got = _trajectory(_DenormalsAreZero, "tiny_magnitudes", "float32")
    spec = tolerance.spec_for("float32")
    assert dg.score(cfg, p0, grads, got, "float32", spec) > 1
    diag = dg.diagnose(cfg, p0, grads, got, "float32", spec)
    assert diag["explained_by"] == "subnormals flushed to zero", diag["detail"]
    assert "flush-to-zero" in diag["detail"]
