"""The closed-loop tasks in each framework: native forward/backward and native AdamW.

Each ``run_<framework>(data, hyper, dtype)`` trains the task of :mod:`conformance.closed_loop.data`
with the framework's own autodiff and its own AdamW constructed with ``hyper`` passed as-is
(``lr``, ``weight_decay``, ``eps``, ``beta1``, ``beta2``), records the minibatch loss *before*
each update and returns :func:`conformance.closed_loop.reference.summarize_run`'s record plus
``implementation`` and ``versions``. Framework imports are lazy; Keras uses the backend named by
``KERAS_BACKEND`` (fixed per process), JAX float64 needs ``jax_enable_x64`` (set here).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from conformance.closed_loop.data import TaskData
from conformance.closed_loop.reference import DTYPES, summarize_run


def _check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}: expected one of {sorted(DTYPES)}")


def run_torch(data: TaskData, hyper: dict[str, float], dtype: str) -> dict[str, Any]:
    """``torch.optim.AdamW`` (default implementation for CPU tensors) + autograd."""
    _check_dtype(dtype)
    import torch

    tdt = getattr(torch, dtype)
    started = time.perf_counter()
    params = {k: torch.tensor(v, dtype=tdt, requires_grad=True) for k, v in data.init.items()}
    opt = torch.optim.AdamW(
        list(params.values()),
        lr=hyper["lr"],
        betas=(hyper["beta1"], hyper["beta2"]),
        eps=hyper["eps"],
        weight_decay=hyper["weight_decay"],
    )
    x = torch.tensor(data.x_train, dtype=tdt)
    y = torch.tensor(data.y_train)
    ws = list(params.values())
    losses: list[float] = []
    for idx in data.batches:
        ib = torch.from_numpy(idx)
        a = x[ib]
        for i in range(0, len(ws), 2):
            a = a @ ws[i] + ws[i + 1]
            if i + 2 < len(ws):
                a = torch.tanh(a)
        loss = torch.nn.functional.cross_entropy(a, y[ib])
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        losses.append(float(loss.item()))
    final = {k: v.detach().numpy() for k, v in params.items()}
    out = summarize_run(data, losses, final, started)
    out["implementation"] = "torch.optim.AdamW(foreach=None, fused=None)"
    out["versions"] = {"torch": torch.__version__}
    return out


def run_keras(data: TaskData, hyper: dict[str, float], dtype: str) -> dict[str, Any]:
    """``keras.optimizers.AdamW`` + a Dense model trained with ``train_on_batch``."""
    _check_dtype(dtype)
    import os

    if os.environ.get("KERAS_BACKEND") == "jax" and dtype == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)  # type: ignore[no-untyped-call]
    import keras

    keras.config.set_floatx(dtype)
    started = time.perf_counter()
    layers = data.layers
    inputs = keras.Input((layers[0],), dtype=dtype)
    h = inputs
    for i, width in enumerate(layers[1:]):
        act = "tanh" if i + 2 < len(layers) else None
        h = keras.layers.Dense(width, activation=act, dtype=dtype)(h)
    model = keras.Model(inputs, h)
    model.set_weights([np.asarray(v, dtype=dtype) for v in data.init.values()])
    opt = keras.optimizers.AdamW(
        learning_rate=hyper["lr"],
        weight_decay=hyper["weight_decay"],
        beta_1=hyper["beta1"],
        beta_2=hyper["beta2"],
        epsilon=hyper["eps"],
    )
    model.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = data.x_train.astype(dtype)
    losses: list[float] = []
    for idx in data.batches:
        logs = model.train_on_batch(x[idx], data.y_train[idx], return_dict=True)
        losses.append(float(logs["loss"]))
    final = dict(zip(data.init, model.get_weights(), strict=True))
    out = summarize_run(data, losses, final, started)
    backend = keras.backend.backend()
    out["implementation"] = f"keras.optimizers.AdamW[{backend}] via Model.train_on_batch"
    out["versions"] = {"keras": keras.__version__, "backend": backend}
    return out


def run_optax(data: TaskData, hyper: dict[str, float], dtype: str) -> dict[str, Any]:
    """``optax.adamw`` + ``jax.value_and_grad`` in a jitted step."""
    _check_dtype(dtype)
    import jax

    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)  # type: ignore[no-untyped-call]
    import jax.numpy as jnp
    import optax

    started = time.perf_counter()
    names = list(data.init)
    params = {k: jnp.asarray(v, dtype=dtype) for k, v in data.init.items()}
    opt = optax.adamw(
        learning_rate=hyper["lr"],
        b1=hyper["beta1"],
        b2=hyper["beta2"],
        eps=hyper["eps"],
        weight_decay=hyper["weight_decay"],
    )
    state = opt.init(params)

    def loss_fn(p: dict[str, Any], xb: Any, yb: Any) -> Any:
        a = xb
        for i in range(0, len(names), 2):
            a = a @ p[names[i]] + p[names[i + 1]]
            if i + 2 < len(names):
                a = jnp.tanh(a)
        return optax.softmax_cross_entropy_with_integer_labels(a, yb).mean()

    @jax.jit
    def train_step(p: Any, s: Any, xb: Any, yb: Any) -> tuple[Any, Any, Any]:
        loss, g = jax.value_and_grad(loss_fn)(p, xb, yb)
        updates, s = opt.update(g, s, p)
        return optax.apply_updates(p, updates), s, loss

    x = jnp.asarray(data.x_train, dtype=dtype)
    y = jnp.asarray(data.y_train)
    losses: list[float] = []
    for idx in data.batches:
        params, state, loss = train_step(params, state, x[idx], y[idx])
        losses.append(float(loss))
    final = {k: np.asarray(v) for k, v in params.items()}
    out = summarize_run(data, losses, final, started)
    out["implementation"] = "optax.adamw + jax.value_and_grad (jit)"
    out["versions"] = {"optax": optax.__version__, "jax": jax.__version__}
    return out


def run_mlx(data: TaskData, hyper: dict[str, float], dtype: str) -> dict[str, Any]:
    """``mlx.optimizers.AdamW`` + ``mlx.core.value_and_grad`` on the CPU stream."""
    _check_dtype(dtype)
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim

    mx.set_default_device(mx.cpu)
    mdt = getattr(mx, dtype)
    started = time.perf_counter()
    names = list(data.init)
    params = {k: mx.array(v, dtype=mdt) for k, v in data.init.items()}
    opt = optim.AdamW(
        learning_rate=hyper["lr"],
        betas=[hyper["beta1"], hyper["beta2"]],
        eps=hyper["eps"],
        weight_decay=hyper["weight_decay"],
    )

    def loss_fn(p: dict[str, Any], xb: Any, yb: Any) -> Any:
        a = xb
        for i in range(0, len(names), 2):
            a = a @ p[names[i]] + p[names[i + 1]]
            if i + 2 < len(names):
                a = mx.tanh(a)
        return nn.losses.cross_entropy(a, yb, reduction="mean")

    grad_fn = mx.value_and_grad(loss_fn)
    x = mx.array(data.x_train, dtype=mdt)
    y = mx.array(data.y_train)
    losses: list[float] = []
    for idx in data.batches:
        ib = mx.array(idx)
        loss, g = grad_fn(params, x[ib], y[ib])
        params = opt.apply_gradients(g, params)
        mx.eval(params, opt.state)
        losses.append(float(loss.item()))
    final = {k: np.array(v) for k, v in params.items()}
    out = summarize_run(data, losses, final, started)
    out["implementation"] = "mlx.optimizers.AdamW + mlx.core.value_and_grad (cpu)"
    out["versions"] = {"mlx": str(getattr(mx, "__version__", "unknown"))}
    return out


RUNNERS = {"torch": run_torch, "keras": run_keras, "optax": run_optax, "mlx": run_mlx}
