"""Worker jobs of the NaN/Inf report (:mod:`conformance.reliability.nan_inf`).

* ``propagation``: one implementation through :func:`adapters.load_adapter` (the adapters pass
  NaN and infinities through untouched, as the specification says), a parameter ``w`` of four
  elements, the gradient of element 0 replaced by NaN, +inf or -inf at step ``k``; the
  parameters and the canonical state (``m``, ``v``) after every step, as bit patterns.
* ``amp``: the frameworks' own skip of a step with a non-finite gradient, called natively:
  ``torch.amp.GradScaler("cpu")`` around ``torch.optim.AdamW`` (for-loop, foreach, fused),
  ``optax.apply_if_finite(optax.adamw(...))``, and
  ``keras.optimizers.LossScaleOptimizer(keras.optimizers.AdamW(...))`` per backend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from conformance.reliability.common import bits

P0 = [0.5, -1.0, 1.5, -2.0]
BASE_G = [0.1, -0.2, 0.3, -0.4]
POISON = {"nan": math.nan, "+inf": math.inf, "-inf": -math.inf}
SCALE = 1024.0  # the loss scale of the AMP jobs (a power of two: scaling is exact)


def gradients(steps: int, k: int | None, poison: str | None) -> list[list[float]]:
    """Fixed gradients (step ``t`` is ``BASE_G * (1 + t/2)``, alternating sign); element 0 of
    step ``k`` (1-based) replaced by ``poison``."""
    out = []
    for t in range(steps):
        g = [x * (1 + t / 2) * (-1) ** t for x in BASE_G]
        if poison is not None and k == t + 1:
            g[0] = POISON[poison]
        out.append(g)
    return out


def propagation(job: Mapping[str, Any]) -> dict[str, Any]:
    """Run ``job["adapter"]`` on the poisoned stream; bit patterns after every step."""
    from adamw_ref import AdamWConfig
    from adapters import load_adapter

    adapter = load_adapter(job["adapter"])
    cfg = AdamWConfig.from_json(job["config"])
    run = adapter.create(
        cfg, {"w": np.array(P0)}, implementation=job.get("implementation"), dtype=job["dtype"]
    )
    grads = gradients(job["steps"], job.get("k"), job.get("poison"))
    if job.get("drop"):  # the stream without step k: a skipped step that never happened
        del grads[job["k"] - 1]
    trace = []
    try:
        for g in grads:
            run.step({"w": np.array(g)})
            st = run.state()
            trace.append(
                {
                    "theta": bits(run.params()["w"]),
                    "m": bits(st.m["w"]),
                    "v": bits(st.v["w"]),
                    "step": int(st.step),
                }
            )
    finally:
        run.close()
    return {"trace": trace}


def amp(job: Mapping[str, Any]) -> dict[str, Any]:
    """One framework's native skipped-step mechanism on the poisoned stream."""
    grads = gradients(job["steps"], job["k"], job["poison"])
    fw = job["framework"]
    if fw == "torch":
        return _amp_torch(job, grads)
    if fw == "optax":
        return _amp_optax(job, grads)
    if fw == "keras":
        return _amp_keras(job, grads)
    raise ValueError(f"no AMP job for {fw!r}")


def _amp_torch(job: Mapping[str, Any], grads: Sequence[Sequence[float]]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    h = job["hyper"]
    flags = {
        "forloop": {"foreach": False, "fused": False},
        "foreach": {"foreach": True, "fused": False},
        "fused": {"fused": True},
    }[job["implementation"]]
    w = torch.nn.Parameter(torch.tensor(P0, dtype=torch.float32))
    opt = torch.optim.AdamW(
        [w], lr=h["lr"], betas=(h["beta1"], h["beta2"]), eps=h["eps"], weight_decay=h["weight_decay"], **flags
    )
    scaler = torch.amp.GradScaler("cpu", init_scale=SCALE, growth_interval=10_000)
    trace = []
    for g in grads:
        opt.zero_grad(set_to_none=True)
        loss = (w * torch.tensor(g, dtype=torch.float32)).sum()  # d loss / d w = g
        scaled: Any = scaler.scale(loss)
        scaled.backward()
        scaler.step(opt)
        scaler.update()
        st = opt.state.get(w, {})
        zero = np.zeros(4)
        trace.append(
            {
                "theta": bits(w.detach().numpy()),
                "m": bits(st["exp_avg"].numpy() if st else zero),
                "v": bits(st["exp_avg_sq"].numpy() if st else zero),
                "step": int(st["step"].item()) if st else 0,
                "scale": float(scaler.get_scale()),
            }
        )
    return {"trace": trace, "mechanism": "torch.amp.GradScaler('cpu') + scaler.step(optimizer)"}


def _amp_optax(job: Mapping[str, Any], grads: Sequence[Sequence[float]]) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    import optax

    h = job["hyper"]
    tx = optax.apply_if_finite(
        optax.adamw(
            learning_rate=h["lr"], b1=h["beta1"], b2=h["beta2"], eps=h["eps"], weight_decay=h["weight_decay"]
        ),
        max_consecutive_errors=5,
    )
    params = {"w": jnp.asarray(P0, dtype=jnp.float32)}
    state = tx.init(params)

    @jax.jit
    def update(p: Any, g: Any, s: Any) -> Any:
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    def adam(s: Any) -> Any:
        for node in jax.tree_util.tree_leaves(s, is_leaf=lambda x: hasattr(x, "mu")):
            if hasattr(node, "mu"):
                return node
        raise ValueError("no ScaleByAdamState in the optax state")

    trace = []
    for g in grads:
        params, state = update(params, {"w": jnp.asarray(g, dtype=jnp.float32)}, state)
        a = adam(state.inner_state)
        trace.append(
            {
                "theta": bits(np.asarray(params["w"])),
                "m": bits(np.asarray(a.mu["w"])),
                "v": bits(np.asarray(a.nu["w"])),
                "step": int(a.count),
                "notfinite_count": int(state.notfinite_count),
            }
        )
    return {"trace": trace, "mechanism": "optax.apply_if_finite(optax.adamw(...), max_consecutive_errors=5)"}


def _loss_scale(keras: Any, h: Mapping[str, float]) -> tuple[Any, Any, Any]:
    inner = keras.optimizers.AdamW(
        learning_rate=h["lr"],
        weight_decay=h["weight_decay"],
        beta_1=h["beta1"],
        beta_2=h["beta2"],
        epsilon=h["eps"],
    )
    opt = keras.optimizers.LossScaleOptimizer(inner, initial_scale=SCALE, dynamic_growth_steps=10_000)
    var = keras.Variable(np.asarray(P0, dtype=np.float32), name="w")
    opt.build([var])
    return inner, opt, var


def _amp_keras(job: Mapping[str, Any], grads: Sequence[Sequence[float]]) -> dict[str, Any]:
    """``LossScaleOptimizer.apply``; on JAX, where the eager ``apply`` raises (recorded as
    ``apply_error``), the jitted ``stateless_apply`` that ``model.fit`` uses, assigned back."""
    import keras

    h = job["hyper"]
    ops = keras.ops
    mechanism = "keras.optimizers.LossScaleOptimizer(AdamW(...)).apply(scaled grads)"
    apply_error = None
    stateless = None
    if keras.backend.backend() == "jax":
        import jax

        _, probe_opt, probe_var = _loss_scale(keras, h)
        try:
            probe_opt.apply([ops.convert_to_tensor(np.ones(4, dtype=np.float32))], [probe_var])
        except Exception as exc:  # the finding: eager apply on JAX
            apply_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
            mechanism = "jax.jit(LossScaleOptimizer(AdamW(...)).stateless_apply), assigned back"
    inner, opt, var = _loss_scale(keras, h)
    if apply_error is not None:
        import jax

        stateless = jax.jit(opt.stateless_apply)

    def num(x: Any) -> Any:
        return np.asarray(ops.convert_to_numpy(x.value if hasattr(x, "value") else x))

    trace = []
    for g in grads:
        scale = float(num(opt.dynamic_scale))
        grad = ops.convert_to_tensor(np.asarray(g, dtype=np.float32) * np.float32(scale))
        if stateless is None:
            opt.apply([grad], [var])
        else:
            new_vars, new_opt = stateless([v.value for v in opt.variables], [grad], [var.value])
            var.assign(new_vars[0])
            for v, x in zip(opt.variables, new_opt, strict=True):
                v.assign(x)
        trace.append(
            {
                "theta": bits(num(var)),
                "m": bits(num(inner._momentums[0])),
                "v": bits(num(inner._velocities[0])),
                "step": int(num(inner.iterations)),
                "outer_iterations": int(num(opt.iterations)),
                "scale": float(num(opt.dynamic_scale)),
            }
        )
    return {"trace": trace, "mechanism": mechanism, "apply_error": apply_error}
