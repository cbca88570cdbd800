r"""NumPy forward/backward of the closed-loop tasks, and the reference training loop.

Forward (layers ``l = 1..L``; ``tanh`` between layers, none after the last):
:math:`a_0 = x,\ z_l = a_{l-1} W_l + b_l,\ a_l = \tanh z_l`; loss
:math:`\frac1B\sum_i \big(\operatorname{logsumexp}(z_{L,i}) - z_{L,i,y_i}\big)`.
Backward: :math:`\delta_L = (\operatorname{softmax}(z_L) - \mathrm{onehot}(y))/B`,
:math:`\partial W_l = a_{l-1}^\top\delta_l,\ \partial b_l = \sum_i \delta_{l,i},\
\delta_{l-1} = (\delta_l W_l^\top)(1-a_{l-1}^2)`.

The reference loop feeds these gradients to :func:`adamw_ref.step` with a profile's config, in
binary64 or in exact binary32 emulation (the NumPy math then runs in float32 too).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from conformance.closed_loop.data import TaskData

DTYPES = {"float64": np.float64, "float32": np.float32}


def _np_dtype(dtype: str) -> Any:
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}: expected one of {sorted(DTYPES)}")
    return DTYPES[dtype]


def _weights(params: dict[str, Any]) -> list[tuple[Any, Any]]:
    names = list(params)
    return [(params[names[i]], params[names[i + 1]]) for i in range(0, len(names), 2)]


def forward(params: dict[str, Any], x: Any) -> tuple[Any, list[Any]]:
    """Logits and the activations ``[a_0, ..., a_{L-1}]``."""
    acts = [x]
    layers = _weights(params)
    z = x
    for i, (w, b) in enumerate(layers):
        z = acts[-1] @ w + b
        if i < len(layers) - 1:
            acts.append(np.tanh(z))
    return z, acts


def loss_and_grads(params: dict[str, Any], x: Any, y: Any) -> tuple[float, dict[str, Any]]:
    """Mean softmax cross-entropy on ``(x, y)`` and its gradient per parameter."""
    logits, acts = forward(params, x)
    shift = logits - logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(shift).sum(axis=1))
    rows = np.arange(len(y))
    loss = float(np.mean(lse - shift[rows, y]))
    delta = np.exp(shift - lse[:, None])
    delta[rows, y] -= 1
    delta /= len(y)
    names = list(params)
    grads: dict[str, Any] = {}
    layers = _weights(params)
    for i in range(len(layers) - 1, -1, -1):
        w, _ = layers[i]
        grads[names[2 * i]] = acts[i].T @ delta
        grads[names[2 * i + 1]] = delta.sum(axis=0)
        if i > 0:
            delta = (delta @ w.T) * (1 - acts[i] ** 2)
    return loss, {n: grads[n] for n in names}


def accuracy(params: dict[str, Any], x: Any, y: Any) -> float:
    """Fraction of rows whose arg-max logit is the label (computed in float64)."""
    p64 = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    logits, _ = forward(p64, np.asarray(x, dtype=np.float64))
    return float(np.mean(np.argmax(logits, axis=1) == y))


def summarize_run(
    data: TaskData, losses: list[float], final: dict[str, Any], started: float
) -> dict[str, Any]:
    """The per-run record: per-step loss, accuracies, final parameters (flat float64 lists)."""
    final64 = {k: np.asarray(final[k], dtype=np.float64).reshape(data.init[k].shape) for k in data.init}
    return {
        "loss": [float(v) for v in losses],
        "train_acc": accuracy(final64, data.x_train, data.y_train),
        "test_acc": accuracy(final64, data.x_test, data.y_test),
        "final_params": {k: v.ravel().tolist() for k, v in final64.items()},
        "finite": bool(np.all(np.isfinite(losses))),
        "duration_s": time.perf_counter() - started,
    }


def run_reference(
    data: TaskData,
    profile: str,
    hyper: dict[str, float],
    dtype: str = "float64",
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train with NumPy gradients and :func:`adamw_ref.step` (profile ``profile`` + ``hyper``).

    ``overrides`` replaces config fields after ``hyper`` (used by the diagnosis to try one knob).
    """
    from adamw_ref import arithmetic_for, get_profile, init, step

    np_dt = _np_dtype(dtype)
    arith = arithmetic_for(dtype)
    cfg = get_profile(profile).config.replace(**hyper, **(overrides or {}))
    started = time.perf_counter()
    params = {k: v.astype(np_dt) for k, v in data.init.items()}
    flat = {k: v.ravel().tolist() for k, v in params.items()}
    state = init(flat, cfg, arith)
    x, y = data.x_train.astype(np_dt), data.y_train
    losses: list[float] = []
    for idx in data.batches:
        loss, grads = loss_and_grads(params, x[idx], y[idx])
        losses.append(loss)
        flat, state = step(flat, {k: g.ravel().tolist() for k, g in grads.items()}, state, cfg, arith)
        params = {
            k: np.asarray([arith.to_float(e) for e in flat[k]], dtype=np_dt).reshape(data.init[k].shape)
            for k in flat
        }
    return summarize_run(data, losses, params, started)
