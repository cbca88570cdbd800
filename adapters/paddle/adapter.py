r"""PaddlePaddle ``paddle.optimizer.AdamW`` (dygraph, CPU; paddlepaddle 3.3.1).

Paddle's Python side (``paddle/optimizer/adamw.py`` ``_append_optimize_op``) calls
``_C_ops.adamw_`` once per parameter that has a gradient; the CPU kernel
(``AdamwDenseKernel``, ``paddle/phi/kernels/cpu/adamw_kernel.cc``; its reference loop is
``paddle/phi/kernels/funcs/jit/refer/refer.h`` ``AdamW``, shipped in the wheel's ``include/``)
computes, with the per-parameter accumulators ``beta1_pow``/``beta2_pow`` holding
:math:`\beta^k` for this step (they start at :math:`\beta` and are multiplied by :math:`\beta`
after it)::

    lr' = lr * sqrt(1 - beta2_pow) / (1 - beta1_pow);  eps' = eps * sqrt(1 - beta2_pow)
    param_tmp = param - old_lr * lr_ratio * coeff * param
    m = beta1*m + (1-beta1)*g;  v = beta2*v + (1-beta2)*g*g   [v_max = max(v, v_max)]
    param = param_tmp - lr' * m / (sqrt(v) + eps')

i.e. the ``torch`` profile (``paddle`` is an alias of it): eps after the bias
correction (``eps * sqrt(1 - beta2^k)`` before the division is the same algebra), decay
multiplicative, before the step, scaled by the current lr; each parameter counts its own steps
(its own ``beta*_pow`` accumulators; a parameter without a gradient is skipped entirely);
AMSGrad keeps the running max of the raw ``v``. ``coeff`` (the weight decay) reaches the kernel
as a C ``float`` attribute (``adamw_kernel.h``: ``float coeff``) whatever the parameter dtype.
The CPU kernel is registered for float32 and float64 only.

Parameter groups are Paddle's own (``parameters=[{"params": ..., "learning_rate": scale,
"weight_decay": wd}]``; a group's ``learning_rate`` multiplies the base one). Schedules are a
``paddle.optimizer.lr.LRScheduler`` stepped after each ``optimizer.step()`` (Paddle's documented
loop), so the first update sees count 0 (``pre_increment``).
"""

from __future__ import annotations

import importlib
import inspect
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from adamw_ref import AdamWConfig, get_profile
from adamw_ref.errors import InputError
from adamw_ref.knobs import (
    AmsgradMode,
    DecayForm,
    DecayScaling,
    DecayTiming,
    EpsPlacement,
    ScheduleCount,
    StepCountScope,
)
from adamw_ref.schedules import Constant
from adapters.capabilities import knob_table
from adapters.errors import AdapterError, FrameworkUnavailable, UnsupportedConfig
from adapters.protocol import AdapterInfo, Array, CanonicalState, Support

NAME = "paddle"
N, E, U = Support.NATIVE, Support.EMULATED, Support.UNSUPPORTED
#: The torch profile's knob values, and what the adapter adds: a decay of 0 ("none"), a
#: post-increment schedule count by shifting the table one step (adapters.capabilities.knob_table).
KNOBS: dict[str, dict[str, Support]] = knob_table(
    get_profile("torch").config,
    {"decay_form": {"none": N}, "schedule_count": {"post_increment": E}},
)
FEATURES: dict[str, Support] = {
    "amsgrad": N,
    "maximize": E,  # the adapter negates the gradient (exact)
    "nesterov": U,
    "eps_root": U,
    "lr_schedule": N,  # a paddle.optimizer.lr.LRScheduler (a table of lr*eta(count))
    "wd_schedule": U,  # weight_decay is a float
    "groups": N,  # parameter groups (learning_rate as a scale of the base lr, weight_decay)
    "frozen": N,  # a parameter without a gradient is skipped
    "save_load": N,  # optimizer.state_dict() / set_state_dict()
}
DTYPES = ("float32", "float64")


def check_config(c: AdamWConfig) -> None:
    """Raise UnsupportedConfig for the first knob or feature Paddle's AdamW cannot express."""

    def no(knob: str, value: object, why: str) -> UnsupportedConfig:
        return UnsupportedConfig(NAME, knob, value, why)

    if c.bias_correction and c.eps_placement is not EpsPlacement.AFTER_BIAS_CORRECTION:
        raise no("eps_placement", c.eps_placement.value, "paddle scales eps by sqrt(1 - beta2^k)")
    if c.decay_scaling is not DecayScaling.LR:
        raise no("decay_scaling", c.decay_scaling.value, "paddle decays by lr * coeff")
    if c.decay_form not in (DecayForm.MULTIPLICATIVE, DecayForm.NONE):
        raise no("decay_form", c.decay_form.value, "paddle: param - lr * coeff * param")
    if c.decay_timing is not DecayTiming.BEFORE_STEP:
        raise no("decay_timing", c.decay_timing.value, "paddle decays before the Adam step")
    if not c.bias_correction:
        raise no("bias_correction", False, "paddle always bias-corrects")
    if c.amsgrad and c.amsgrad_mode is not AmsgradMode.RAW_V:
        raise no("amsgrad_mode", c.amsgrad_mode.value, "paddle keeps the running max of the raw v")
    if c.step_count_scope is not StepCountScope.PER_PARAMETER:
        raise no("step_count_scope", c.step_count_scope.value, "paddle keeps beta powers per parameter")
    if c.bias_correction_offset != 0:
        raise no("bias_correction_offset", c.bias_correction_offset, "paddle's beta powers start at beta")
    if c.nesterov:
        raise no("nesterov", True, "paddle AdamW has no Nesterov form")
    if c.eps_root != 0.0:
        raise no("eps_root", c.eps_root, "paddle has no eps inside the sqrt")
    if not isinstance(c.wd_schedule, Constant):
        raise no("wd_schedule", c.wd_schedule.to_json().get("kind", "user"), "weight_decay is a float")
    if c.lr == 0.0 and any(g.lr not in (None, 0.0) for g in c.groups):
        raise no("groups.lr", [g.lr for g in c.groups], "a group's learning_rate scales a base lr of 0")


def _import() -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            paddle = importlib.import_module("paddle")  # untyped, not in mypy's overrides
    except ImportError as exc:
        raise FrameworkUnavailable(NAME, f"paddlepaddle is not installed: {exc}") from None
    paddle.set_device("cpu")
    return paddle


def lr_table(config: AdamWConfig, dtype: str, length: int) -> np.ndarray[Any, Any]:
    """``fl(fl(lr) * fl(eta(c)))`` for ``c < length`` in ``dtype``."""
    np_dt = np.float64 if dtype == "float64" else np.float32
    shift = 1 if config.schedule_count is ScheduleCount.POST_INCREMENT else 0
    etas = np.array([config.lr_schedule(c + shift) for c in range(length)], dtype=np.float64)
    return np.asarray(np.multiply(etas.astype(np_dt), np.asarray(config.lr, dtype=np_dt)), dtype=np_dt)


class PaddleAdamW:
    """Factory for ``paddle.optimizer.AdamW`` runs (implementation ``default``, CPU)."""

    info = AdapterInfo(
        name=NAME,
        framework="paddlepaddle",
        profile="torch",
        implementations=("default",),
        devices=("cpu",),
        dtypes=DTYPES,
        knobs=KNOBS,
        features=FEATURES,
        notes="the CPU adamw kernel is registered for float32 and float64 only; the weight decay "
        "(coeff) is a float32 kernel attribute",
    )

    def versions(self) -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return {"paddlepaddle": version("paddlepaddle")}
        except PackageNotFoundError:
            return {"paddlepaddle": "not installed"}

    def native_defaults(self) -> AdamWConfig:
        """``inspect.signature(paddle.optimizer.AdamW)`` of the installed package."""
        paddle = _import()
        p = inspect.signature(paddle.optimizer.AdamW).parameters
        return AdamWConfig(
            lr=float(p["learning_rate"].default),
            beta1=float(p["beta1"].default),
            beta2=float(p["beta2"].default),
            eps=float(p["epsilon"].default),
            weight_decay=float(p["weight_decay"].default),
            amsgrad=bool(p["amsgrad"].default),
            eps_placement=EpsPlacement.AFTER_BIAS_CORRECTION,
            decay_scaling=DecayScaling.LR,
            decay_form=DecayForm.MULTIPLICATIVE,
            decay_timing=DecayTiming.BEFORE_STEP,
            bias_correction=True,
            amsgrad_mode=AmsgradMode.RAW_V,
            schedule_count=ScheduleCount.PRE_INCREMENT,
            step_count_scope=StepCountScope.PER_PARAMETER,
        )

    def to_native(self, config: AdamWConfig, implementation: str | None = None) -> dict[str, Any]:
        """``paddle.optimizer.AdamW`` keyword arguments; ``groups`` lists the parameter groups
        (names, ``learning_rate`` as a scale of the base lr, ``weight_decay``)."""
        if implementation not in (None, "default"):
            raise UnsupportedConfig(NAME, "implementation", implementation, "expected 'default'")
        if not isinstance(config, AdamWConfig):
            raise AdapterError(f"{NAME}: config must be an AdamWConfig, got {config!r}")
        check_config(config)
        assert isinstance(config.wd_schedule, Constant)
        scale = config.wd_schedule.value
        off = config.decay_form is DecayForm.NONE
        lr: Any = config.lr
        if not (isinstance(config.lr_schedule, Constant) and config.lr_schedule.value == 1.0):
            lr = {
                "LRScheduler": "lr * eta(count)",
                "lr": config.lr,
                "schedule": config.lr_schedule.to_json(),
                "count": config.schedule_count.value,
            }
        groups = []
        for g in config.groups:
            g_lr = config.lr if g.lr is None else g.lr
            g_wd = config.weight_decay if g.weight_decay is None else g.weight_decay
            groups.append(
                {
                    "names": list(g.names),
                    "learning_rate": 1.0 if config.lr == 0.0 else g_lr / config.lr,
                    "weight_decay": 0.0 if off else g_wd * scale,
                }
            )
        return {
            "learning_rate": lr,
            "beta1": config.beta1,
            "beta2": config.beta2,
            "epsilon": config.eps,
            "weight_decay": 0.0 if off else config.weight_decay * scale,
            "amsgrad": config.amsgrad,
            "groups": groups,
        }

    def create(
        self,
        config: AdamWConfig,
        params: Mapping[str, Array],
        *,
        implementation: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> PaddleRun:
        native = self.to_native(config, implementation)
        if device != "cpu":
            raise FrameworkUnavailable(NAME, f"device={device!r}: this adapter runs paddle on cpu")
        if dtype not in DTYPES:
            raise UnsupportedConfig(
                NAME, "dtype", dtype, f"paddle's CPU adamw kernel is registered for {list(DTYPES)}"
            )
        _import()
        return PaddleRun(config, native, params, dtype)


_ACC = ("moment1", "moment2", "moment2_max", "beta1_pow_acc", "beta2_pow_acc")


class PaddleRun:
    """A live ``paddle.optimizer.AdamW`` over named Paddle parameters."""

    def __init__(
        self, config: AdamWConfig, native: Mapping[str, Any], params: Mapping[str, Array], dtype: str
    ) -> None:
        from adapters.arrays import as_float64

        paddle = _import()
        if not isinstance(params, Mapping) or not params:
            raise InputError("params", params, "must be a non-empty mapping of name -> array")
        self.paddle, self.config, self.dtype = paddle, config, dtype
        self.np_dtype = np.dtype(dtype)
        self.names = list(params)
        arrays = {n: as_float64(params[n], f"params[{n!r}]") for n in self.names}
        self.shapes = {n: a.shape for n, a in arrays.items()}
        self.p = {n: self._param(arrays[n]) for n in self.names}
        self.counts = dict.fromkeys(self.names, 0)
        self.table: np.ndarray[Any, Any] | None = None
        self.sched: Any = None
        lr: Any = native["learning_rate"]
        if isinstance(lr, dict):
            lr = self.sched = self._scheduler()
        grouped = {n for g in native["groups"] for n in g["names"]}
        plist: list[Any] = []
        for g in native["groups"]:
            members = [self.p[n] for n in self.names if n in g["names"]]
            if members:
                plist.append(
                    {
                        "params": members,
                        "learning_rate": g["learning_rate"],
                        "weight_decay": g["weight_decay"],
                    }
                )
        rest = [self.p[n] for n in self.names if n not in grouped]
        if plist and rest:
            plist.insert(0, {"params": rest})
        elif not plist:
            plist = rest
        self.opt = paddle.optimizer.AdamW(
            learning_rate=lr,
            beta1=float(native["beta1"]),
            beta2=float(native["beta2"]),
            epsilon=float(native["epsilon"]),
            parameters=plist,
            weight_decay=float(native["weight_decay"]),
            amsgrad=bool(native["amsgrad"]),
        )
        # Create the accumulators now (Paddle makes them on a parameter's first gradient), so
        # that state() and set_state() see every parameter.
        block = paddle.static.default_main_program().global_block()
        if isinstance(plist[0], dict):
            for group in self.opt._param_groups:
                self.opt._create_accumulators(block, group["params"])
        else:
            self.opt._create_accumulators(block, list(self.p.values()))

    def _param(self, a: np.ndarray[Any, Any]) -> Any:
        paddle = self.paddle
        p = paddle.create_parameter(list(a.shape), self.dtype)
        p.set_value(np.asarray(a, dtype=self.np_dtype))
        return p

    def _scheduler(self) -> Any:
        run = self
        base: Any = self.paddle.optimizer.lr.LRScheduler
        run.table = lr_table(self.config, self.dtype, 64)

        class TableScheduler(base):  # type: ignore[misc]
            """lr * eta(last_epoch) from a table that grows on demand."""

            def get_lr(self) -> float:
                k = int(self.last_epoch)
                assert run.table is not None
                while k >= len(run.table):
                    run.table = lr_table(run.config, run.dtype, 2 * len(run.table))
                return float(run.table[k])

        return TableScheduler(learning_rate=float(self.config.lr))

    def _acc(self, kind: str, name: str) -> Any:
        return self.opt._accumulators[kind][self.p[name].name]

    def _np(self, t: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
        return np.array(t.numpy(), dtype=np.float64)

    def step(self, grads: Mapping[str, Array | None]) -> None:
        from adapters.arrays import as_float64

        missing = [n for n in self.names if n not in grads]
        extra = [n for n in grads if n not in self.shapes]
        if missing or extra:
            raise InputError("grads", sorted(grads), f"missing {missing}, unknown {extra}")
        arrays: dict[str, np.ndarray[Any, Any]] = {}
        for n in self.names:
            g = grads[n]
            if g is None:
                continue
            arr = as_float64(g, f"grads[{n!r}]")
            if arr.shape != self.shapes[n]:
                raise InputError(f"grads[{n!r}]", arr.shape, f"expected {self.shapes[n]}")
            arrays[n] = -arr if self.config.maximize else arr
        self.opt.clear_grad(set_to_zero=False)  # None, not zeros: a zero gradient is a step
        for n, arr in arrays.items():
            self.p[n]._set_grad_ivar(self.paddle.to_tensor(np.asarray(arr, dtype=self.np_dtype)))
            self.counts[n] += 1
        if arrays:
            self.opt.step()
        self.opt.clear_grad(set_to_zero=False)
        if self.sched is not None:
            self.sched.step()

    def params(self) -> dict[str, Array]:
        return {n: self._np(self.p[n]) for n in self.names}

    def state(self) -> CanonicalState:
        m = {n: self._np(self._acc("moment1", n)) for n in self.names}
        v = {n: self._np(self._acc("moment2", n)) for n in self.names}
        vmax = {n: self._np(self._acc("moment2_max", n)) for n in self.names} if self.config.amsgrad else None
        return CanonicalState(
            step=max(self.counts.values()), m=m, v=v, v_max=vmax, param_steps=dict(self.counts)
        )

    def _kinds(self) -> list[str]:
        return sorted(k for k in self.opt._accumulators if k in _ACC)

    def save(self, path: Path) -> None:
        """The optimizer's accumulators (what ``optimizer.state_dict()`` holds, keyed by the
        parameter's position instead of its process-unique name), the scheduler's count and the
        parameters."""
        from adapters.arrays import save_arrays

        arrays: dict[str, Any] = {}
        for kind in self._kinds():
            for i, n in enumerate(self.names):
                arrays[f"{kind}.{i}"] = np.asarray(self._acc(kind, n).numpy())
        arrays.update({f"param{i:04d}": np.asarray(self.p[n].numpy()) for i, n in enumerate(self.names)})
        meta = {
            "format": "adamw-ref/paddle",
            "dtype": self.dtype,
            "accumulators": self._kinds(),
            "params": self.names,
            "counts": [self.counts[n] for n in self.names],
            "scheduler": None if self.sched is None else int(self.sched.last_epoch),
        }
        save_arrays(path, arrays, meta)

    def load(self, path: Path) -> None:
        from adapters.arrays import load_arrays

        arrays, meta = load_arrays(path)
        if not isinstance(meta, dict) or meta.get("format") != "adamw-ref/paddle":
            raise AdapterError(f"{str(path)!r} is not a paddle adapter state file")
        kinds = self._kinds()
        if (
            meta.get("accumulators") != kinds
            or meta.get("params") != self.names
            or meta.get("dtype") != self.dtype
        ):
            raise AdapterError(f"{str(path)!r}: accumulators/params/dtype differ from this optimizer's")
        for kind in kinds:
            for i, n in enumerate(self.names):
                self._acc(kind, n).set_value(arrays[f"{kind}.{i}"])
        for i, n in enumerate(self.names):
            self.p[n].set_value(arrays[f"param{i:04d}"])
        if self.sched is not None and meta.get("scheduler") is not None:
            self.sched.last_epoch = int(meta["scheduler"])
            self.sched.last_lr = self.sched.get_lr()
        self.counts = {n: int(c) for n, c in zip(self.names, meta["counts"], strict=True)}

    def set_state(self, params: Mapping[str, Array], state: CanonicalState) -> None:
        if (state.v_max is None) == bool(self.config.amsgrad):
            raise InputError("state.v_max", state.v_max is not None, f"amsgrad={self.config.amsgrad}")
        steps = state.param_steps or dict.fromkeys(self.names, int(state.step))
        b1, b2 = self.config.beta1, self.config.beta2
        for n in self.names:
            self.p[n].set_value(np.asarray(params[n], dtype=self.np_dtype))
            self._acc("moment1", n).set_value(np.asarray(state.m[n], dtype=self.np_dtype))
            self._acc("moment2", n).set_value(np.asarray(state.v[n], dtype=self.np_dtype))
            if state.v_max is not None:
                self._acc("moment2_max", n).set_value(np.asarray(state.v_max[n], dtype=self.np_dtype))
            k = int(steps.get(n, state.step))
            # beta*_pow hold beta^(k+1): the power the next step uses.
            for kind, beta in (("beta1_pow_acc", b1), ("beta2_pow_acc", b2)):
                acc = self._acc(kind, n)
                acc.set_value(
                    np.full(acc.shape, math.pow(beta, k + 1), dtype=np.dtype(str(acc.numpy().dtype)))
                )
            self.counts[n] = k

    def close(self) -> None:
        self.p = {}
