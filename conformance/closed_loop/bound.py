r"""Rounding-level tolerance of a closed-loop comparison, derived from the task.

Two runs with the same data, batches and initial weights whose gradients come from different
code (summation order, libm) differ per step by a relative gradient error of at most
:math:`\gamma = c\,n\,u` (:math:`n` the longest reduction: the batch size or the widest fan-in,
64 for the digits tasks and 512 for ``mlp_wide``; :math:`u` the unit roundoff; :math:`c=4`).
AdamW's update :math:`\alpha\hat m/(\sqrt{\hat v}+\epsilon)` is invariant to the gradient's
scale and each element moves at most about :math:`\alpha` per step, so a relative gradient error
:math:`\gamma` moves a parameter by at most :math:`A\alpha\gamma` per step, with :math:`A=10`
covering the ratio :math:`|g|/|\hat m|` where the running mean cancels. Without chaotic growth
(a convex loss, or a short run of a small MLP) the errors add:

.. math:: |\Delta\theta_t| \le B_\theta(t) = t\,\alpha\,A\,c\,n\,u.

The minibatch loss is Lipschitz in the parameters (softmax cross-entropy moves by at most
:math:`2\max_j|\delta z_j|`, :math:`\tanh` is 1-Lipschitz,
:math:`|aW|_1\le|a|_1\max_i\sum_j|W_{ij}|`):

.. math:: |\Delta L_t| \le \gamma|L_t| + S\,B_\theta(t),\quad
   S = 2\sum_l n_l(\max|a_{l-1}|_1 + 1)\prod_{k>l}\max_i\textstyle\sum_j|W_{k,ij}|.

Two frameworks compared with each other (``impl_vs_impl``) get twice the bound (both round).
"""

from __future__ import annotations

from typing import Any

import numpy as np

C_STEP = 4.0
AMPLIFICATION = 10.0
REDUCTION = 64
UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24}


def unit_roundoff(dtype: str) -> float:
    if dtype not in UNIT_ROUNDOFF:
        raise ValueError(f"dtype={dtype!r}: expected one of {sorted(UNIT_ROUNDOFF)}")
    return UNIT_ROUNDOFF[dtype]


def loss_sensitivity(x: Any, weights: list[dict[str, Any]], layers: tuple[int, ...]) -> float:
    """:math:`S` above, taking each weight norm as the max over the given parameter sets."""
    n_layers = len(layers) - 1
    norms = [
        max(
            float(
                np.max(
                    np.abs(
                        np.asarray(w[f"W{k + 1}" if n_layers > 1 else "W"]).reshape(layers[k], layers[k + 1])
                    ).sum(axis=1)
                )
            )
            for w in weights
        )
        for k in range(n_layers)
    ]
    a1 = [float(np.max(np.abs(x).sum(axis=1)))] + [float(width) for width in layers[1:-1]]
    total = 0.0
    for layer in range(n_layers):
        prod = float(np.prod([1.0, *norms[layer + 1 :]]))
        total += layers[layer + 1] * (a1[layer] + 1.0) * prod
    return 2.0 * total


def reduction_length(layers: tuple[int, ...], batch_size: int) -> int:
    """:math:`n`: the longest reduction of a pass, over the batch (weight gradients) or a fan-in
    (forward products and input gradients); at least :data:`REDUCTION`."""
    return max(REDUCTION, batch_size, *layers)


def closed_loop_bound(
    dtype: str,
    lr: float,
    steps: int,
    sensitivity: float,
    u_eff: float | None = None,
    kind: str = "ref_vs_impl",
    reduction: int = REDUCTION,
) -> dict[str, Any]:
    """The bound record (``Bound`` fields plus ``param_abs`` and the loss terms); ``reduction``
    is :math:`n`, the longest sum in a forward or backward pass (:func:`reduction_length`)."""
    u = unit_roundoff(dtype) if u_eff is None else u_eff
    factor = 2.0 if kind == "impl_vs_impl" else 1.0
    per_step = factor * lr * AMPLIFICATION * C_STEP * reduction * u
    return {
        "kind": kind,
        "dtype": dtype,
        "device": "cpu",
        "c_step": C_STEP * reduction,
        "unit_roundoff": u,
        "max_ratio": 0.0,
        "amplification": AMPLIFICATION,
        "param_abs": per_step * steps,
        "param_abs_per_step": per_step,
        "loss_rel": factor * C_STEP * reduction * u,
        "loss_sensitivity": sensitivity,
        "derivation": "B_theta(t) = t*lr*A*c*n*u; |dL_t| <= c*n*u*|L_t| + S*B_theta(t) "
        "(docs/conformance/closed_loop.md)",
    }


def loss_bounds(bound: dict[str, Any], ref_loss: Any) -> Any:
    """Per-step loss bound :math:`\\gamma|L_t| + S B_\\theta(t)` (array over steps)."""
    t = np.arange(1, len(ref_loss) + 1, dtype=np.float64)
    return bound["loss_rel"] * np.abs(np.asarray(ref_loss, dtype=np.float64)) + bound[
        "loss_sensitivity"
    ] * bound["param_abs_per_step"] * (t - 1)
