"""The state-precision bound against a real implementation that stores narrow: torchao's AdamW.

``torchao.optim._AdamW`` on bfloat16 parameters computes each step in float32 from bfloat16
parameters, ``m`` and ``v`` and stores all three back in bfloat16 (``single_param_adam``: "compute
in FP32 for accurate calculations", then ``p.copy_(p_f32)``, ``exp_avg.copy_(exp_avg_f32)``).
That is the reference with ``param_dtype = m_dtype = v_dtype = "bfloat16"`` over float32
arithmetic (torch's knobs: decay scaled by lr before the step, eps after bias correction). Judged
free-running against the binary64 reference with that storage, it must lie within the derived
bound; judged as if it stored only the parameters narrow, or nothing, it must not (the bound has
the power to tell). Skipped where torchao is not installed (it is not in the README install).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    adam = pytest.importorskip("torchao.optim.adam")

from adamw_ref import AdamWConfig, get_profile  # noqa: E402
from conformance import compare as cmp  # noqa: E402
from conformance import tolerance  # noqa: E402
from conformance.diagnose import reference_points  # noqa: E402

B1, B2, EPS = 0.9, 0.999, 1e-8
SHAPES = {"w": (48,), "b": (5,)}


def _bf16(a: Any) -> np.ndarray:
    return torch.as_tensor(np.asarray(a, np.float64)).to(torch.bfloat16).double().numpy()  # type: ignore[no-any-return]


def _problem(seed: int, steps: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """bfloat16-representable parameters and gradients (torch keeps ``p.grad`` in the
    parameter's dtype), gradient scales from 1e-6 to 1 so that eps matters for some."""
    rng = np.random.default_rng(seed)
    p0 = {n: _bf16(rng.standard_normal(s)) for n, s in SHAPES.items()}
    grads = [
        {n: _bf16(rng.standard_normal(s) * 10.0 ** float(rng.integers(-6, 1))) for n, s in SHAPES.items()}
        for _ in range(steps)
    ]
    return p0, grads


def _eager(p0: dict[str, Any], grads: list[dict[str, Any]], lr: float, wd: float) -> list[dict[str, Any]]:
    """torchao's own step function, called as ``_AdamW.step`` calls it (without torch.compile)."""
    params = {n: torch.tensor(a, dtype=torch.bfloat16) for n, a in p0.items()}
    state = {n: (torch.tensor(0.0), torch.zeros_like(p), torch.zeros_like(p)) for n, p in params.items()}
    lr_t = torch.tensor(lr, dtype=torch.float32)  # _AdamW keeps lr as a float32 tensor
    out = []
    for g in grads:
        for n, p in params.items():
            step, m, v = state[n]
            step += 1
            grad = torch.tensor(g[n], dtype=torch.bfloat16)
            adam.single_param_adam(p, grad, step, m, v, None, lr_t, B1, B2, wd, EPS, True, False)
        out.append({n: p.double().numpy().copy() for n, p in params.items()})
    return out


def _ratio(
    cfg: AdamWConfig, p0: dict[str, Any], grads: list[dict[str, Any]], got: list[dict[str, Any]]
) -> float:
    ref = reference_points(cfg, p0, grads, "float32")
    bounds = tolerance.step_bounds(cfg, ref, grads, tolerance.spec_for("float32"), "free")
    return cmp.compare([p.params for p in ref[1:]], got, bounds, "float32").max_ratio


def _configs(lr: float, wd: float) -> dict[str, AdamWConfig]:
    base = get_profile("torch").config.replace(lr=lr, weight_decay=wd)
    narrow = {"param_dtype": "bfloat16", "m_dtype": "bfloat16", "v_dtype": "bfloat16"}
    return {
        "what it stores": base.replace(**narrow),
        "parameters only": base.replace(param_dtype="bfloat16"),
        "nothing narrow": base,
    }


@pytest.mark.parametrize(("seed", "lr", "wd"), [(0, 1e-2, 0.1), (1, 1e-3, 0.0), (2, 1e-1, 0.01)])
def test_torchao_bf16_master_step_is_within_the_state_precision_bound(
    seed: int, lr: float, wd: float
) -> None:
    p0, grads = _problem(seed, 120)
    got = _eager(p0, grads, lr, wd)
    ratios = {label: _ratio(cfg, p0, grads, got) for label, cfg in _configs(lr, wd).items()}
    assert ratios["what it stores"] <= 1.0, ratios
    assert ratios["parameters only"] > 1.0, ratios  # m and v rounded too: the bound sees it
    assert ratios["nothing narrow"] > 1.0, ratios


@pytest.mark.skipif(not os.environ.get("ADAMW_RUNSLOW"), reason="torch.compile on the CPU: ADAMW_RUNSLOW=1")
def test_torchao_adamw_class_compiled_is_within_the_bound() -> None:
    """The optimizer class itself (``torch.compile(single_param_adam)``, Inductor's fused C++)."""
    from torchao.optim import _AdamW  # type: ignore[import-untyped]

    lr, wd = 1e-2, 0.1
    p0, grads = _problem(3, 40)
    params = {n: torch.nn.Parameter(torch.tensor(a, dtype=torch.bfloat16)) for n, a in p0.items()}
    opt = _AdamW(list(params.values()), lr=lr, betas=(B1, B2), eps=EPS, weight_decay=wd)
    got = []
    for g in grads:
        for n, p in params.items():
            p.grad = torch.tensor(g[n], dtype=torch.bfloat16)
        opt.step()
        got.append({n: p.detach().double().numpy().copy() for n, p in params.items()})
    assert _ratio(_configs(lr, wd)["what it stores"], p0, grads, got) <= 1.0
