r"""MLX ``mlx.optimizers.AdamW`` (CPU on Linux).

MLX computes (``mlx/optimizers/optimizers.py``, mlx 0.32.4; ``step`` incremented first)::

    AdamW.apply_single: super().apply_single(gradient, parameter * (1 - lr * weight_decay), state)
    Adam.apply_single:  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2
        bias_correction: c1 = (lr / (1 - b1**step)); c2 = rsqrt(1 - b2**step)
                         parameter - c1*m / (sqrt(v)*c2 + eps)
        else:            parameter - lr*m / (sqrt(v) + eps)

i.e. the ``mlx`` profile: multiplicative decay before the step scaled by lr, eps after the bias
correction, no bias correction by default (``bias_correction=True`` is a native flag), one global
``step``; schedules (``learning_rate`` callable) see ``step`` before the increment. MLX keeps
``learning_rate`` as a float32 array and computes ``b**step`` in float32 (``step`` is uint64).

Emulated here: ``maximize`` (negated gradient), frozen parameters (left out of the gradient
dict, so MLX skips them), parameter groups (one ``AdamW`` per distinct ``(lr, weight_decay)``,
all stepped together, like ``mlx.optimizers.MultiOptimizer``), post-increment schedules (table
shifted by one).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from adamw_ref import AdamWConfig, get_profile
from adamw_ref.errors import InputError
from adamw_ref.knobs import (
    DecayForm,
    DecayScaling,
    DecayTiming,
    EpsPlacement,
    ScheduleCount,
    StepCountScope,
)
from adamw_ref.schedules import Constant
from adapters.errors import AdapterError, FrameworkUnavailable, UnsupportedConfig
from adapters.protocol import AdapterInfo, Array, CanonicalState, Support

NAME = "mlx"
N, E, U = Support.NATIVE, Support.EMULATED, Support.UNSUPPORTED
KNOBS: dict[str, dict[str, Support]] = {
    "eps_placement": {"after_bias_correction": N, "before_bias_correction": U},
    "decay_scaling": {"lr": N, "schedule_multiplier": U, "unscaled": U},
    "decay_form": {"multiplicative": N, "none": N, "proximal": U, "added_to_update": U, "coupled_l2": U},
    "decay_timing": {"before_step": N, "after_step": U},
    "bias_correction": {"false": N, "true": N},
    "amsgrad_mode": {"raw_v": U, "bias_corrected_v": U},
    "schedule_count": {"pre_increment": N, "post_increment": E},
    "step_count_scope": {"global": N, "per_parameter": U},
    "bias_correction_offset": {"0": N},
}
FEATURES: dict[str, Support] = {
    "amsgrad": U,
    "maximize": E,
    "nesterov": U,
    "eps_root": U,
    "lr_schedule": N,
    "wd_schedule": U,
    "groups": E,
    "frozen": N,
    "save_load": N,
}
REQUIRED_FILLED = ("lr",)
_DT = {"float32": "float32", "float64": "float64", "bfloat16": "bfloat16", "float16": "float16"}


def check_config(c: AdamWConfig) -> None:
    """Raise UnsupportedConfig for the first knob or feature MLX AdamW cannot express."""

    def no(knob: str, value: object, why: str) -> UnsupportedConfig:
        return UnsupportedConfig(NAME, knob, value, why)

    # Without bias correction the two eps placements coincide (bc2 = 1).
    if c.bias_correction and c.eps_placement is not EpsPlacement.AFTER_BIAS_CORRECTION:
        raise no("eps_placement", c.eps_placement.value, "mlx adds eps to sqrt(v)*rsqrt(bc2)")
    if c.decay_scaling is not DecayScaling.LR:
        raise no("decay_scaling", c.decay_scaling.value, "mlx decays by lr * weight_decay")
    if c.decay_form not in (DecayForm.MULTIPLICATIVE, DecayForm.NONE):
        raise no("decay_form", c.decay_form.value, "mlx multiplies by (1 - lr*wd)")
    if c.decay_timing is not DecayTiming.BEFORE_STEP:
        raise no("decay_timing", c.decay_timing.value, "mlx decays before the Adam step")
    if c.amsgrad:
        raise no("amsgrad", True, "mlx AdamW has no AMSGrad")
    if c.step_count_scope is not StepCountScope.GLOBAL:
        raise no("step_count_scope", c.step_count_scope.value, "mlx has one global step")
    if c.bias_correction_offset:
        raise no("bias_correction_offset", c.bias_correction_offset, "mlx uses its step")
    if c.nesterov:
        raise no("nesterov", True, "mlx AdamW has no Nesterov form")
    if c.eps_root:
        raise no("eps_root", c.eps_root, "mlx has no eps inside the sqrt")
    if not isinstance(c.wd_schedule, Constant):
        raise no("wd_schedule", c.wd_schedule.to_json().get("kind"), "weight_decay is a float")


class MLXAdamW:
    """Factory for ``mlx.optimizers.AdamW`` runs (implementation ``default``)."""

    info = AdapterInfo(
        name=NAME,
        framework="mlx",
        profile="mlx",
        implementations=("default",),
        devices=("cpu",),
        dtypes=("float32", "float64", "bfloat16", "float16"),
        knobs=KNOBS,
        features=FEATURES,
        notes="learning_rate has no default (filled from the mlx profile); float64 only on CPU; "
        "mlx keeps lr as float32 and computes b**step in float32",
    )

    def versions(self) -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return {"mlx": version("mlx")}
        except PackageNotFoundError:
            return {"mlx": "not installed"}

    def native_defaults(self) -> AdamWConfig:
        """``inspect.signature(mlx.optimizers.AdamW)``; the required learning_rate is filled."""
        optim = _import()[1]
        p = inspect.signature(optim.AdamW).parameters
        lr = p["learning_rate"].default
        if lr is inspect.Parameter.empty:
            lr = get_profile("mlx").config.lr
        b1, b2 = p["betas"].default
        return AdamWConfig(
            lr=float(lr),
            beta1=float(b1),
            beta2=float(b2),
            eps=float(p["eps"].default),
            weight_decay=float(p["weight_decay"].default),
            bias_correction=bool(p["bias_correction"].default),
            eps_placement=EpsPlacement.AFTER_BIAS_CORRECTION,
            decay_scaling=DecayScaling.LR,
            decay_form=DecayForm.MULTIPLICATIVE,
            decay_timing=DecayTiming.BEFORE_STEP,
            schedule_count=ScheduleCount.PRE_INCREMENT,
            step_count_scope=StepCountScope.GLOBAL,
        )

    def to_native(self, config: AdamWConfig, implementation: str | None = None) -> dict[str, Any]:
        """``AdamW`` keyword arguments (one dict per parameter group under ``groups``)."""
        if implementation not in (None, "default"):
            raise UnsupportedConfig(NAME, "implementation", implementation, "expected 'default'")
        check_config(config)
        sched = not (isinstance(config.lr_schedule, Constant) and config.lr_schedule.value == 1.0)
        scale = config.wd_schedule.value if isinstance(config.wd_schedule, Constant) else 1.0
        out: dict[str, Any] = {
            "betas": [config.beta1, config.beta2],
            "eps": config.eps,
            "bias_correction": config.bias_correction,
            "groups": [],
        }
        groups = [("*", config.lr, config.weight_decay)] + [
            (
                list(g.names),
                config.lr if g.lr is None else g.lr,
                config.weight_decay if g.weight_decay is None else g.weight_decay,
            )
            for g in config.groups
        ]
        for names, lr, wd in groups:
            wd = 0.0 if config.decay_form is DecayForm.NONE else wd * scale
            out["groups"].append(
                {"names": names, "weight_decay": wd, "learning_rate": "table[step]" if sched else lr}
            )
        return out

    def create(
        self,
        config: AdamWConfig,
        params: Mapping[str, Array],
        *,
        implementation: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> MLXRun:
        native = self.to_native(config, implementation)
        if device != "cpu":
            raise FrameworkUnavailable(NAME, f"device={device!r}: this adapter runs mlx on cpu")
        if dtype not in _DT:
            raise UnsupportedConfig(NAME, "dtype", dtype, f"expected one of {list(_DT)}")
        _import()
        return MLXRun(config, native, params, dtype)


def _partition(config: AdamWConfig, names: list[str]) -> dict[tuple[float, float], list[str]]:
    """Parameter names grouped by their ``(lr, weight_decay)``."""
    groups: dict[tuple[float, float], list[str]] = {}
    for n in names:
        groups.setdefault(config.group_for(n), []).append(n)
    return groups


def _import() -> tuple[Any, Any]:
    try:
        import mlx.core as mx
        import mlx.optimizers as optim
    except ImportError as exc:
        raise FrameworkUnavailable(NAME, f"mlx is not installed: {exc}") from None
    mx.set_default_device(mx.cpu)
    return mx, optim


class MLXRun:
    """Live MLX AdamW optimizers (one per parameter group) over named ``mx.array`` params."""

    def __init__(
        self, config: AdamWConfig, native: Mapping[str, Any], params: Mapping[str, Array], dtype: str
    ) -> None:
        from adapters.arrays import as_float64

        mx, optim = _import()
        if not isinstance(params, Mapping) or not params:
            raise InputError("params", params, "must be a non-empty mapping of name -> array")
        self.mx, self.config, self.dtype = mx, config, dtype
        self.mx_dtype = getattr(mx, _DT[dtype])
        self.names = list(params)
        arrays = {n: as_float64(params[n], f"params[{n!r}]") for n in self.names}
        self.shapes = {n: a.shape for n, a in arrays.items()}
        self.p = {n: self._arr(a) for n, a in arrays.items()}
        shift = 1 if config.schedule_count is ScheduleCount.POST_INCREMENT else 0
        self.opts: list[tuple[Any, list[str]]] = []
        scale = config.wd_schedule.value if isinstance(config.wd_schedule, Constant) else 1.0
        for (lr, wd), names in _partition(config, self.names).items():
            lr_arg: Any = lr
            if not (
                isinstance(config.lr_schedule, Constant) and config.lr_schedule.value == 1.0 and not shift
            ):
                lr_arg = self._schedule(lr, shift)
            opt = self.build(
                optim,
                learning_rate=lr_arg,
                betas=list(native["betas"]),
                eps=float(native["eps"]),
                weight_decay=0.0 if config.decay_form is DecayForm.NONE else wd * scale,
                bias_correction=bool(native["bias_correction"]),
            )
            opt.init({n: self.p[n] for n in names})
            self.opts.append((opt, names))

    def build(self, optim: Any, **kwargs: Any) -> Any:
        """One group's optimizer: ``mlx.optimizers.AdamW(**kwargs)`` (``learning_rate``,
        ``betas``, ``eps``, ``weight_decay``, ``bias_correction``); the generic ``mlx:``
        wrapper builds its own class here."""
        return optim.AdamW(**kwargs)

    def _arr(self, a: np.ndarray[Any, Any]) -> Any:
        # mx.array(float64 ndarray) would round to float32 unless the dtype is given.
        return self.mx.array(np.asarray(a, dtype=np.float64), dtype=self.mx.float64).astype(self.mx_dtype)

    def _schedule(self, lr: float, shift: int) -> Any:
        """``table[step]`` with ``table[c] = fl(fl(lr) * fl(eta(c + shift)))`` (float32 for
        16-bit dtypes, like MLX's own float32 learning rate); grows on demand."""
        mx, cfg = self.mx, self.config
        np_dt = np.float64 if self.dtype == "float64" else np.float32
        cache: dict[str, Any] = {}

        def table(length: int) -> Any:
            etas = np.array([cfg.lr_schedule(c + shift) for c in range(length)])
            vals = np.multiply(etas.astype(np_dt), np.asarray(lr, dtype=np_dt))
            return mx.array(vals, dtype=mx.float64 if np_dt is np.float64 else mx.float32)

        def fn(step: Any) -> Any:
            k = int(step.item())
            if "t" not in cache or k >= cache["t"].shape[0]:
                cache["t"] = table(max(1024, 2 * (k + 1)))
            return cache["t"][k]

        return fn

    def _np(self, x: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
        if self.dtype in ("bfloat16",):
            x = x.astype(self.mx.float32)
        return np.array(x, dtype=np.float64)

    def step(self, grads: Mapping[str, Array | None]) -> None:
        from adapters.arrays import as_float64

        missing = [n for n in self.names if n not in grads]
        extra = [n for n in grads if n not in self.shapes]
        if missing or extra:
            raise InputError("grads", sorted(grads), f"missing {missing}, unknown {extra}")
        new = dict(self.p)
        for opt, names in self.opts:
            gs = {}
            for n in names:
                g = grads[n]
                if g is None:
                    continue  # frozen: mlx updates only the parameters it gets gradients for
                arr = as_float64(g, f"grads[{n!r}]")
                if arr.shape != self.shapes[n]:
                    raise InputError(f"grads[{n!r}]", arr.shape, f"expected {self.shapes[n]}")
                gs[n] = self._arr(-arr if self.config.maximize else arr)
            new.update(opt.apply_gradients(gs, {n: self.p[n] for n in names}))
        self.mx.eval(new, [o.state for o, _ in self.opts])
        self.p = new

    def params(self) -> dict[str, Array]:
        return {n: self._np(self.p[n]) for n in self.names}

    def state(self) -> CanonicalState:
        m: dict[str, Array] = {}
        v: dict[str, Array] = {}
        for opt, names in self.opts:
            for n in names:
                m[n] = self._np(opt.state[n]["m"])
                v[n] = self._np(opt.state[n]["v"])
        step = int(self.opts[0][0].state["step"].item())
        return CanonicalState(
            step=step, m={n: m[n] for n in self.names}, v={n: v[n] for n in self.names}, v_max=None
        )

    def save(self, path: Path) -> None:
        """Each optimizer's ``state`` (step, learning_rate, per-parameter m and v) + params."""
        from adapters.arrays import save_arrays

        arrays: dict[str, Any] = {}
        for i, (opt, names) in enumerate(self.opts):
            arrays[f"opt{i}.step"] = np.array(opt.state["step"])
            arrays[f"opt{i}.learning_rate"] = np.array(opt.state["learning_rate"])
            for j, n in enumerate(names):
                for key in ("m", "v"):
                    arrays[f"opt{i}.{j}.{key}"] = self._raw(opt.state[n][key])
        for j, n in enumerate(self.names):
            arrays[f"param{j}"] = self._raw(self.p[n])
        meta = {"format": "adamw-ref/mlx", "groups": [names for _, names in self.opts], "dtype": self.dtype}
        save_arrays(path, arrays, meta)

    def _raw(self, x: Any) -> np.ndarray[Any, Any]:
        if self.dtype == "bfloat16":
            return np.array(x.astype(self.mx.float32))  # exact; cast back on load
        return np.array(x)

    def load(self, path: Path) -> None:
        from adapters.arrays import load_arrays

        arrays, meta = load_arrays(path)
        groups = [names for _, names in self.opts]
        if not isinstance(meta, dict) or meta.get("format") != "adamw-ref/mlx":
            raise AdapterError(f"{str(path)!r} is not an mlx adapter state file")
        if meta.get("groups") != groups or meta.get("dtype") != self.dtype:
            raise AdapterError(f"{str(path)!r}: groups/dtype differ from this optimizer's")
        mx = self.mx
        for i, (opt, names) in enumerate(self.opts):
            opt.state["step"] = mx.array(arrays[f"opt{i}.step"])
            lr = arrays[f"opt{i}.learning_rate"]
            opt.state["learning_rate"] = mx.array(lr, dtype=getattr(mx, lr.dtype.name))
            for j, n in enumerate(names):
                for key in ("m", "v"):
                    opt.state[n][key] = self._arr(arrays[f"opt{i}.{j}.{key}"])
        self.p = {n: self._arr(arrays[f"param{j}"]) for j, n in enumerate(self.names)}

    def set_state(self, params: Mapping[str, Array], state: CanonicalState) -> None:
        if state.v_max is not None:
            raise InputError("state.v_max", "present", "mlx AdamW has no AMSGrad state")
        mx = self.mx
        self.p = {n: self._arr(np.asarray(params[n])) for n in self.names}
        for opt, names in self.opts:
            opt.state["step"] = mx.array(int(state.step), dtype=mx.uint64)
            for n in names:
                opt.state[n]["m"] = self._arr(np.asarray(state.m[n]))
                opt.state[n]["v"] = self._arr(np.asarray(state.v[n]))

    def close(self) -> None:
        self.opts = []
