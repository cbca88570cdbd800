"""PyTorch AdamW (for-loop, foreach, fused; CPU float32) predicted bit for bit by its operation
order (:mod:`adamw_ref.oporder`), and torch's elementary operations measured one by one.

The gradients here are not the ones the profiles were derived on (``benchmarks/bit_exact.py``:
log-uniform magnitudes): a Student-t body times 10^U(-7, 5), exact zeros, runs of a constant
gradient and sign flips, on two tensors (64 and 13 elements, so the fused kernel's scalar
remainder is exercised), 1000 steps. Every element of params, m, v (and AMSGrad's maximum) must
be predicted exactly, at every step.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pytest

from adamw_ref import elementary as E
from adamw_ref import get_profile
from adamw_ref.oporder import PLATFORMS, predict_trajectory

if importlib.util.find_spec("torch") is None:
    pytest.skip("torch is not installed", allow_module_level=True)

import torch

SIZES = {"w": 64, "b": 13}
STEPS = 1000


def torch_platform() -> str:
    """The platform whose sqrt torch's float32 CPU ``sqrt`` computes here (probed)."""
    rng = np.random.default_rng(99)
    x = ((rng.random(4096) + 0.5) * 10.0 ** rng.uniform(-30, 30, 4096)).astype(np.float32)
    got = torch.from_numpy(x).sqrt().numpy().tolist()
    for name, plat in PLATFORMS.items():
        if plat.sqrt_vml(x.tolist()) == got:
            return name
    pytest.skip("torch's float32 sqrt here matches no modelled platform (MKL on an Intel CPU?)")


def stream(seed: int) -> tuple[dict[str, np.ndarray[Any, Any]], list[dict[str, np.ndarray[Any, Any]]]]:
    rng = np.random.default_rng(seed)
    params = {
        k: (rng.standard_normal(n) * 10.0 ** rng.uniform(-4, 2, n)).astype(np.float32)
        for k, n in SIZES.items()
    }
    grads = []
    for t in range(STEPS):
        g = {}
        for k, n in SIZES.items():
            x = rng.standard_t(3, n) * 10.0 ** rng.uniform(-7, 5, n)
            x[rng.random(n) < 0.05] = 0.0
            if 300 <= t < 340:  # a run of a constant gradient, then a sign flip
                x = np.full(n, 2.5e-3 if t < 330 else -2.5e-3)
            g[k] = x.astype(np.float32)
        grads.append(g)
    return params, grads


def run_torch(mode: str, cfg: Any, params: dict[str, Any], grads: list[dict[str, Any]]) -> dict[str, Any]:
    ts = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in params.items()}
    flags = {"forloop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}[mode]
    opt = torch.optim.AdamW(
        list(ts.values()),
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        amsgrad=cfg.amsgrad,
        maximize=cfg.maximize,
        **flags,
    )
    out: dict[str, list[Any]] = {"p": [], "m": [], "v": [], "vmax": []}
    for g in grads:
        for k, t in ts.items():
            t.grad = torch.from_numpy(g[k].copy())
        opt.step()
        st = [opt.state[t] for t in ts.values()]
        out["p"].append(np.concatenate([t.detach().numpy() for t in ts.values()]))
        out["m"].append(np.concatenate([s["exp_avg"].numpy() for s in st]))
        out["v"].append(np.concatenate([s["exp_avg_sq"].numpy() for s in st]))
        if cfg.amsgrad:
            out["vmax"].append(np.concatenate([s["max_exp_avg_sq"].numpy() for s in st]))
    return {k: np.array(v) for k, v in out.items() if v}


CONFIGS = {
    "default": {},
    "large-decay-amsgrad": {"lr": 0.5, "weight_decay": 1.5, "amsgrad": True},
    "maximize-lerp-branch": {"lr": 2e-2, "weight_decay": 0.3, "beta1": 0.25, "beta2": 0.95, "maximize": True},
}


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("mode", ["forloop", "foreach", "fused"])
def test_profile_predicts_every_element(mode: str, config: str) -> None:
    plat = torch_platform()
    cfg = get_profile("torch").config.replace(**CONFIGS[config])
    params, grads = stream(seed=1000 + len(config) * 7 + len(mode))
    got = run_torch(mode, cfg, params, grads)
    tr = predict_trajectory(
        f"torch:{mode}",
        cfg,
        {k: v.tolist() for k, v in params.items()},
        [{k: v.tolist() for k, v in g.items()} for g in grads],
        platform=plat,
    )

    def flat(rows: list[Any]) -> np.ndarray[Any, Any]:
        return np.array([np.concatenate([np.asarray(r[k], np.float32) for k in SIZES]) for r in rows])

    pred = {
        "p": flat(tr.params[1:]),
        "m": flat([s.m for s in tr.states[1:]]),
        "v": flat([s.v for s in tr.states[1:]]),
    }
    if cfg.amsgrad:
        pred["vmax"] = flat([s.v_max for s in tr.states[1:]])
    for key, arr in got.items():
        same = arr.view(np.uint32) == pred[key].view(np.uint32)
        assert same.all(), (
            f"{key}: {(~same).sum()} of {same.size} differ, first at step {np.argwhere(~same)[0]}"
        )


# ---------------------------------------------------------------------- elementary operations
def _f32(n: int, lo: float, hi: float, seed: int, signed: bool = True) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(seed)
    x = (rng.random(n) + 0.5) * 10.0 ** rng.uniform(lo, hi, n)
    if signed:
        x *= rng.choice([-1.0, 1.0], n)
    return x.astype(np.float32)


N = 50_000
X, Y = _f32(N, -18, 18, 1), _f32(N, -18, 18, 2)
Z = _f32(N, -12, 12, 3, signed=False)


def _cr(x64: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The correctly rounded binary32 result from a binary64 one (innocuous for + - * / sqrt)."""
    return x64.astype(np.float32)


#: (operation, torch result, correctly rounded result): measured correctly rounded on this CPU
CORRECTLY_ROUNDED = {
    "mul": lambda: (torch.from_numpy(X) * torch.from_numpy(Y), _cr(X.astype(float) * Y)),
    "add": lambda: (torch.from_numpy(X) + torch.from_numpy(Y), _cr(X.astype(float) + Y)),
    "div": lambda: (torch.from_numpy(X) / torch.from_numpy(Y), _cr(X.astype(float) / Y)),
    "mul_python_scalar": lambda: (
        torch.from_numpy(X) * 0.999,
        _cr(X.astype(float) * float(np.float32(0.999))),
    ),
    "div_python_scalar": lambda: (
        torch.from_numpy(X) / 0.9995,
        _cr(X.astype(float) / float(np.float32(0.9995))),
    ),
    "add_python_scalar": lambda: (torch.from_numpy(Z) + 1e-8, _cr(Z.astype(float) + float(np.float32(1e-8)))),
    "maximum": lambda: (
        torch.maximum(torch.from_numpy(Z), torch.from_numpy(Z[::-1].copy())),
        np.maximum(Z, Z[::-1]),
    ),
}


@pytest.mark.parametrize("op", list(CORRECTLY_ROUNDED))
def test_correctly_rounded_ops(op: str) -> None:
    got, want = CORRECTLY_ROUNDED[op]()
    assert (got.numpy().view(np.uint32) == want.view(np.uint32)).all()


def test_division_by_a_python_scalar_divides_it_does_not_multiply_by_a_reciprocal() -> None:
    c = float(np.float32(0.9995))
    recip = _cr(X.astype(float) * float(np.float32(1.0 / c)))
    got = (torch.from_numpy(X) / 0.9995).numpy()
    assert (got == _cr(X.astype(float) / c)).all() and (got != recip).any()


def test_sqrt_is_not_correctly_rounded_with_mkl_on_this_cpu() -> None:
    got = torch.from_numpy(Z).sqrt().numpy()
    cr = _cr(np.sqrt(Z.astype(float)))
    plat = PLATFORMS[torch_platform()]
    assert got.tolist() == plat.sqrt_vml(Z.tolist())
    if plat.vml_sqrt == "mkl_ex":
        off = (got != cr).mean()
        assert 0.12 < off < 0.22  # 17 % one ulp off (measured)
        ulps = np.abs(got.view(np.int32).astype(np.int64) - cr.view(np.int32))
        assert ulps.max() == 1
    # strided (non-contiguous) tensors go through the same VML call on a copied buffer
    strided = torch.from_numpy(np.repeat(Z, 2))[::2].sqrt().numpy()
    assert (strided == got).all()


@pytest.mark.parametrize("weight", [0.1, 0.3, 0.5, 0.7, 0.999])
def test_lerp_is_a_fused_multiply_add_on_either_branch(weight: float) -> None:
    s, e = (X / np.float32(1e9)), (Y / np.float32(1e9))
    for n in (N, 37):  # the vectorised loop and the scalar remainder
        got = torch.from_numpy(s[:n]).lerp(torch.from_numpy(e[:n]), weight).numpy()
        w = E.f32(weight)
        d = E.sub(e[:n].tolist(), s[:n].tolist())
        want = E.fma_s(w, d, s[:n].tolist()) if abs(w) < 0.5 else E.fma_s(E.f32(w - 1.0), d, e[:n].tolist())
        assert got.tolist() == want
        naive = E.add(s[:n].tolist(), E.mul_s(d, w))
        if n == N:
            assert got.tolist() != naive


def test_addcmul_contracts_value_times_t1_then_fma() -> None:
    c = 1 - 0.999
    t1, t2 = (X / np.float32(1e9)), (Y / np.float32(1e9))
    for n in (N, 21):
        got = (
            torch.from_numpy(Z[:n])
            .addcmul(torch.from_numpy(t1[:n]), torch.from_numpy(t2[:n]), value=c)
            .numpy()
        )
        want = E.fma(E.mul_s(t1[:n].tolist(), E.f32(c)), t2[:n].tolist(), Z[:n].tolist())
        assert got.tolist() == want


def test_addcdiv_is_value_times_t1_over_t2_plus_self() -> None:
    v = -1.2345e-3
    got = torch.from_numpy(X).addcdiv(torch.from_numpy(Y), torch.from_numpy(Z), value=v).numpy()
    want = E.add(X.tolist(), E.div(E.mul_s(Y.tolist(), E.f32(v)), Z.tolist()))
    assert got.tolist() == want


def test_scalar_pow_on_0dim_tensors_is_the_c_library_powf() -> None:
    b = np.float32(0.999)
    ks = np.arange(1, 4000, dtype=np.float32)
    got = [torch.pow(torch.tensor(b), torch.tensor(k)).item() for k in ks]
    plat = PLATFORMS[torch_platform()]
    assert got == [plat.pow32(float(b), float(k)) for k in ks]
