"""Each framework's AdamW called natively, as a user would, on one parity row (runs in a worker).

Not through the adapters: ``torch.optim.AdamW`` on ``torch.nn.Parameter`` tensors with ``.grad``
assigned; ``optax.adamw`` with a jitted ``update`` + ``apply_updates`` over a dict of ``jnp``
arrays; ``keras.optimizers.AdamW.apply(grads, variables)`` on ``keras.Variable`` objects (one
backend per process); ``mlx.optimizers.AdamW.apply_gradients`` over a dict of ``mx.array``.
Two columns of our own for comparison: ``reference`` (``adamw_ref.init``/``step`` on flat
lists) and ``adapters`` (``adapters.load_adapter("torch")``, the checked protocol).

How a row is expressed natively, where the framework has no direct counterpart:

* **a missing gradient**: torch ``p.grad = None``, Keras ``None`` in the gradient list (both are
  those frameworks' frozen parameter, the spec's ``None``: reported n/a), Optax and MLX a dict
  without the key;
* **an extra gradient**: Optax and MLX a dict with an extra key, Keras one more gradient than
  variables; torch keeps a gradient on its tensor (``.grad``), so no name can be unknown (n/a);
* **a decay group naming ``biass``**: torch ``[{"params": [p for n, p in named if n not in
  ("biass",)]}, {"params": [p for n, p in named if n in ("biass",)], "weight_decay": 0.0}]``;
  Optax ``mask={"w": True, "biass": False}``; Keras
  ``exclude_from_weight_decay(var_names=["biass"])``; MLX ``MultiOptimizer([AdamW(wd=0), AdamW()],
  [lambda path, _: path in ("biass",)])``; the reference ``ParamGroup(names=("biass",),
  weight_decay=0.0)``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from conformance.reliability.cases import BY_ID, Inputs, inputs
from conformance.reliability.common import one_line

#: column -> (framework family, implementation); the order of the table's columns
COLUMNS: dict[str, tuple[str, str]] = {
    "torch-forloop": ("torch", "forloop"),
    "torch-foreach": ("torch", "foreach"),
    "torch-fused": ("torch", "fused"),
    "optax": ("optax", "jit"),
    "keras-tensorflow": ("keras", "tensorflow"),
    "keras-jax": ("keras", "jax"),
    "keras-torch": ("keras", "torch"),
    "mlx": ("mlx", "default"),
    "reference": ("reference", "spec"),
    "adapters": ("adapters", "torch"),
}


class NotApplicable(Exception):
    """The row has no native counterpart in this framework (the message says why)."""


class Skipped(Exception):
    """The row is not run in this column here (the message says why: no GPU, or not written)."""


#: Why the device row is skipped outside the torch columns (true on a GPU host as well).
ONLY_TORCH_DEVICES = "not written for this column: the device row places torch tensors only"


def _summary(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n, a in values.items():
        arr = np.asarray(a)
        try:
            bad = int(np.count_nonzero(~np.isfinite(arr))) if arr.dtype.kind in "fc" else 0
        except TypeError:
            bad = 0
        out[n] = {"dtype": str(arr.dtype), "shape": list(arr.shape), "nonfinite": bad}
    return out


def _moved(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    for n, a in after.items():
        b = before.get(n)
        if b is None:
            continue
        x, y = np.asarray(a), np.asarray(b)
        if x.shape != y.shape:
            return True
        try:
            if not np.array_equal(x, y, equal_nan=x.dtype.kind in "fc" and y.dtype.kind in "fc"):
                return True
        except TypeError:
            return True
    return False


# ----------------------------------------------------------------------------------------- torch
class _Torch:
    def __init__(self, impl: str) -> None:
        import torch

        torch.set_num_threads(1)
        self.torch = torch
        self.flags = {
            "forloop": {"foreach": False, "fused": False},
            "foreach": {"foreach": True, "fused": False},
            "fused": {"fused": True},
        }[impl]
        self.device = "cpu"

    def check(self, row: str, inp: Inputs) -> None:
        if row == "grad_missing":
            raise NotApplicable("no .grad (None) is torch's frozen parameter: the spec's None")
        if row == "grad_extra":
            raise NotApplicable("a gradient lives on its tensor (.grad): no name can be unknown")
        if row == "device_mismatch":
            if not self.torch.cuda.is_available():
                raise Skipped("no GPU on this machine")
            self.device = "cuda"

    def params(self, arrays: Mapping[str, Any]) -> dict[str, Any]:
        t = self.torch
        return {n: t.nn.Parameter(t.as_tensor(a).to(self.device)) for n, a in arrays.items()}

    def optimizer(self, params: dict[str, Any], hyper: Mapping[str, float], exclude: tuple[str, ...]) -> Any:
        h = hyper
        groups: Any = list(params.values())
        if exclude:
            groups = [
                {"params": [p for n, p in params.items() if n not in exclude]},
                {"params": [p for n, p in params.items() if n in exclude], "weight_decay": 0.0},
            ]
        return self.torch.optim.AdamW(
            groups,
            lr=h["lr"],
            betas=(h["beta1"], h["beta2"]),
            eps=h["eps"],
            weight_decay=h["weight_decay"],
            **self.flags,
        )

    def step(self, opt: Any, params: dict[str, Any], grads: Mapping[str, Any]) -> None:
        for n, p in params.items():
            p.grad = self.torch.as_tensor(grads[n]) if n in grads else None
        opt.step()

    def values(self, opt: Any, params: dict[str, Any]) -> dict[str, Any]:
        return {n: p.detach().cpu().numpy().copy() for n, p in params.items()}


# ----------------------------------------------------------------------------------------- optax
class _Optax:
    def __init__(self) -> None:
        import jax
        import jax.numpy as jnp
        import optax

        self.jax, self.jnp, self.optax = jax, jnp, optax

    def check(self, row: str, inp: Inputs) -> None:
        if row == "device_mismatch":
            raise Skipped(ONLY_TORCH_DEVICES)

    def params(self, arrays: Mapping[str, Any]) -> dict[str, Any]:
        return {n: self.jnp.asarray(a) for n, a in arrays.items()}

    def optimizer(self, params: dict[str, Any], hyper: Mapping[str, float], exclude: tuple[str, ...]) -> Any:
        h, optax = hyper, self.optax
        mask = None
        if exclude:
            mask = {**{n: True for n in params if n != "b"}, **dict.fromkeys(exclude, False)}
        tx = optax.adamw(
            learning_rate=h["lr"],
            b1=h["beta1"],
            b2=h["beta2"],
            eps=h["eps"],
            weight_decay=h["weight_decay"],
            mask=mask,
        )
        state = tx.init(params)

        def update(p: Any, g: Any, s: Any) -> Any:
            u, s = tx.update(g, s, p)
            return optax.apply_updates(p, u), s

        return {"update": self.jax.jit(update), "state": state}

    def step(self, opt: Any, params: dict[str, Any], grads: Mapping[str, Any]) -> None:
        g = {n: self.jnp.asarray(a) for n, a in grads.items()}
        new, opt["state"] = opt["update"](params, g, opt["state"])
        params.clear()
        params.update(new)

    def values(self, opt: Any, params: dict[str, Any]) -> dict[str, Any]:
        return {n: np.asarray(a) for n, a in params.items()}


# ----------------------------------------------------------------------------------------- keras
class _Keras:
    def __init__(self, backend: str) -> None:
        if os.environ.get("KERAS_BACKEND") != backend:
            raise RuntimeError(f"worker started without KERAS_BACKEND={backend}")
        import keras

        self.keras = keras

    def check(self, row: str, inp: Inputs) -> None:
        if row == "grad_missing":
            raise NotApplicable("a None gradient is Keras' frozen variable (with a warning): the spec's None")
        if row == "device_mismatch":
            raise Skipped(ONLY_TORCH_DEVICES)

    def params(self, arrays: Mapping[str, Any]) -> dict[str, Any]:
        return {n: self.keras.Variable(a, name=n) for n, a in arrays.items()}

    def optimizer(self, params: dict[str, Any], hyper: Mapping[str, float], exclude: tuple[str, ...]) -> Any:
        h = hyper
        opt = self.keras.optimizers.AdamW(
            learning_rate=h["lr"],
            weight_decay=h["weight_decay"],
            beta_1=h["beta1"],
            beta_2=h["beta2"],
            epsilon=h["eps"],
        )
        if exclude:
            opt.exclude_from_weight_decay(var_names=list(exclude))
        return opt

    def step(self, opt: Any, params: dict[str, Any], grads: Mapping[str, Any]) -> None:
        ops = self.keras.ops
        gs = [ops.convert_to_tensor(grads[n]) if n in grads else None for n in params]
        gs += [ops.convert_to_tensor(a) for n, a in grads.items() if n not in params]
        opt.apply(gs, list(params.values()))

    def values(self, opt: Any, params: dict[str, Any]) -> dict[str, Any]:
        return {n: np.asarray(self.keras.ops.convert_to_numpy(v.value)) for n, v in params.items()}


# ------------------------------------------------------------------------------------------- mlx
class _MLX:
    def __init__(self) -> None:
        import mlx.core as mx
        import mlx.optimizers as optim

        mx.set_default_device(mx.cpu)
        self.mx, self.optim = mx, optim

    def check(self, row: str, inp: Inputs) -> None:
        if row == "grad_missing":
            raise NotApplicable(
                "an absent key is MLX's frozen parameter (apply_gradients updates the keys it gets)"
            )
        if row == "device_mismatch":
            raise Skipped("no GPU on this machine (MLX: Apple silicon only)")

    def params(self, arrays: Mapping[str, Any]) -> dict[str, Any]:
        return {n: self.mx.array(a) for n, a in arrays.items()}

    def optimizer(self, params: dict[str, Any], hyper: Mapping[str, float], exclude: tuple[str, ...]) -> Any:
        h, optim = hyper, self.optim

        def make(wd: float) -> Any:
            return optim.AdamW(
                learning_rate=h["lr"], betas=[h["beta1"], h["beta2"]], eps=h["eps"], weight_decay=wd
            )

        if exclude:
            return optim.MultiOptimizer(
                [make(0.0), make(h["weight_decay"])], [lambda path, _: path in exclude]
            )
        return make(h["weight_decay"])

    def step(self, opt: Any, params: dict[str, Any], grads: Mapping[str, Any]) -> None:
        g = {n: self.mx.array(a) for n, a in grads.items()}
        new = opt.apply_gradients(g, params)
        self.mx.eval(new, opt.state)
        params.update(new)

    def values(self, opt: Any, params: dict[str, Any]) -> dict[str, Any]:
        return {n: np.array(a) for n, a in params.items()}


# ------------------------------------------------------------------------------ ours: the spec
class _Reference:
    def check(self, row: str, inp: Inputs) -> None:
        if row == "device_mismatch":
            raise Skipped("the reference has no devices")

    def params(self, arrays: Mapping[str, Any]) -> dict[str, Any]:
        return {n: np.asarray(a).reshape(-1).tolist() for n, a in arrays.items()}

    def optimizer(self, params: dict[str, Any], hyper: Mapping[str, float], exclude: tuple[str, ...]) -> Any:
        from adamw_ref import ParamGroup, get_profile, init

        cfg = get_profile("torch").config.replace(**hyper)
        if exclude:
            cfg = cfg.replace(groups=(ParamGroup(names=exclude, weight_decay=0.0),))
        return {"config": cfg, "state": init(params, cfg)}

    def step(self, opt: Any, params: dict[str, Any], grads: Mapping[str, Any]) -> None:
        from adamw_ref import step

        g = {n: np.asarray(a).reshape(-1).tolist() for n, a in grads.items()}
        new, opt["state"] = step(params, g, opt["state"], opt["config"])
        params.clear()
        params.update({n: list(v) for n, v in new.items()})

    def values(self, opt: Any, params: dict[str, Any]) -> dict[str, Any]:
        return {n: np.asarray(v, dtype=np.float64) for n, v in params.items()}


class _Adapters:
    def check(self, row: str, inp: Inputs) -> None:
        if row == "device_mismatch":
            raise Skipped(ONLY_TORCH_DEVICES)

    def params(self, arrays: Mapping[str, Any]) -> dict[str, Any]:
        return dict(arrays)

    def optimizer(self, params: dict[str, Any], hyper: Mapping[str, float], exclude: tuple[str, ...]) -> Any:
        from adamw_ref import ParamGroup, get_profile
        from adapters import load_adapter

        cfg = get_profile("torch").config.replace(**hyper)
        if exclude:
            cfg = cfg.replace(groups=(ParamGroup(names=exclude, weight_decay=0.0),))
        return load_adapter("torch").create(cfg, params, implementation="forloop", dtype="float32")

    def step(self, opt: Any, params: dict[str, Any], grads: Mapping[str, Any]) -> None:
        opt.step(grads)

    def values(self, opt: Any, params: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = opt.params()
        return out


def _driver(column: str) -> Any:
    family, impl = COLUMNS[column]
    if family == "torch":
        return _Torch(impl)
    if family == "optax":
        return _Optax()
    if family == "keras":
        return _Keras(impl)
    if family == "mlx":
        return _MLX()
    if family == "reference":
        return _Reference()
    return _Adapters()


def parity_case(column: str, row_id: str) -> dict[str, Any]:
    """What ``column``'s framework does with row ``row_id``: where it raised (stage, error type,
    first line of the message), or a summary of the parameters after every step; warnings too."""
    row = BY_ID[row_id]
    inp = inputs(row.id)
    drv = _driver(column)
    stage = "check"
    caught: list[str] = []
    out: dict[str, Any] = {"column": column, "row": row.id}
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            drv.check(row.id, inp)
            stage = "params"
            params = drv.params(inp.params)
            stage = "optimizer"
            opt = drv.optimizer(params, inp.hyper, inp.exclude)
            before = drv.values(opt, params)
            history = []
            for t, g in enumerate(inp.grads):
                stage = f"step {t + 1}"
                drv.step(opt, params, g)
                history.append(_summary(drv.values(opt, params)))
            after = drv.values(opt, params)
            out.update(raised=False, steps=history, moved=_moved(before, after), initial=_summary(before))
            out["nan_from_step"] = next(
                (
                    t + 1
                    for t, h in enumerate(history)
                    if sum(x["nonfinite"] for x in h.values())
                    > sum(x["nonfinite"] for x in _summary(before).values())
                ),
                None,
            )
        except NotApplicable as exc:
            out.update(raised=False, not_applicable=str(exc))
        except Skipped as exc:
            out.update(raised=False, skipped=str(exc))
        except Exception as exc:  # the finding itself: what the framework raised, and where
            out.update(raised=True, stage=stage, error=type(exc).__name__, message=one_line(str(exc)))
        caught = [
            one_line(f"{w.category.__name__}: {w.message}")
            for w in seen
            if not issubclass(w.category, (DeprecationWarning, FutureWarning))
        ]
    out["warnings"] = sorted(set(caught))[:3]
    return out
