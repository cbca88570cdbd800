r"""tinygrad ``tinygrad.nn.optim.AdamW`` (tinygrad 0.14.0, the ``CPU`` device).

``AdamW(params, lr=0.001, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01)`` is
``LAMB(..., adam=True)``; ``LAMB._step`` (``tinygrad/nn/optim.py``) computes, per step::

    b1_t *= b1;  b2_t *= b2                       # one running product per optimizer (float32)
    m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*(g*g)   # stored in OPTIM_DTYPE (float32 default)
    up = (m / (1 - b1_t)) / (sqrt(v / (1 - b2_t)) + eps) + wd * t
    t = t - lr * up                                  # r = 1 for adam

i.e. the ``tinygrad`` profile: decay *added to the update* (scaled by lr, like optax and apex),
eps after the bias correction, one global count (``b1_t``, ``b2_t``). ``lr`` is a float32
``Tensor`` (``least_upper_dtype(default_float, float32)``), ``b1_t``/``b2_t`` are float32, and
``m``/``v`` are created in ``OPTIM_DTYPE`` (float32 unless that environment variable is set when
the optimizer is built) whatever the parameter dtype: float64 parameters get float32 moments,
lr and bias corrections; float16/bfloat16 parameters get float32 moments (a mixed-precision
update) but a 16-bit gradient square ``g*g``.

Implementations: ``default`` (one kernel set per parameter) and ``fused`` (``fused=True``: the
parameters and gradients are concatenated into one flat buffer and updated together).
Parameter groups are tinygrad's own ``OptimizerGroup`` (one ``AdamW`` per ``(lr, weight_decay)``,
stepped together, so they share the count). A learning-rate schedule assigns ``optimizer.lr``
before each step (what tinygrad's ``extra/lr_scheduler.py`` does after each step).
Every parameter needs a gradient on every step (``unwrap(t.grad)``): frozen parameters are
refused. Needs a C compiler for the ``CPU`` device (``clang`` on ``PATH``).
"""

from __future__ import annotations

import importlib
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
from adapters.capabilities import knob_table
from adapters.errors import AdapterError, FrameworkUnavailable, UnsupportedConfig
from adapters.protocol import AdapterInfo, Array, CanonicalState, Support

NAME = "tinygrad"
N, E, U = Support.NATIVE, Support.EMULATED, Support.UNSUPPORTED
#: The tinygrad profile's knob values, and what the adapter adds: a decay of 0 ("none"), a
#: post-increment schedule count by shifting the table one step; no AMSGrad at all (the profile
#: names raw_v, tinygrad has none) (adapters.capabilities.knob_table).
KNOBS: dict[str, dict[str, Support]] = knob_table(
    get_profile("tinygrad").config,
    {"decay_form": {"none": N}, "amsgrad_mode": {"raw_v": U}, "schedule_count": {"post_increment": E}},
)
FEATURES: dict[str, Support] = {
    "amsgrad": U,
    "maximize": E,  # the adapter negates the gradient (exact)
    "nesterov": U,
    "eps_root": U,
    "lr_schedule": N,  # optimizer.lr (a Tensor) assigned before each step
    "wd_schedule": U,  # weight_decay is a float
    "groups": N,  # OptimizerGroup of one AdamW per (lr, weight_decay)
    "frozen": U,  # every parameter needs a gradient on every step
    "save_load": N,  # tinygrad.nn.state.get_state_dict / load_state_dict
}
IMPLEMENTATIONS = ("default", "fused")
DTYPES = ("float32", "float64", "float16", "bfloat16")


def check_config(c: AdamWConfig) -> None:
    """Raise UnsupportedConfig for the first knob or feature tinygrad's AdamW cannot express."""

    def no(knob: str, value: object, why: str) -> UnsupportedConfig:
        return UnsupportedConfig(NAME, knob, value, why)

    if c.eps_placement is not EpsPlacement.AFTER_BIAS_CORRECTION:
        raise no("eps_placement", c.eps_placement.value, "tinygrad adds eps to sqrt(v_hat)")
    if c.decay_scaling is not DecayScaling.LR:
        raise no("decay_scaling", c.decay_scaling.value, "tinygrad multiplies the whole update by lr")
    if c.decay_form not in (DecayForm.ADDED_TO_UPDATE, DecayForm.NONE):
        raise no("decay_form", c.decay_form.value, "tinygrad adds wd * t to the Adam direction")
    if c.decay_timing is not DecayTiming.BEFORE_STEP:
        raise no("decay_timing", c.decay_timing.value, "tinygrad decays the pre-step parameter")
    if not c.bias_correction:
        raise no("bias_correction", False, "tinygrad always bias-corrects")
    if c.amsgrad:
        raise no("amsgrad", True, "tinygrad AdamW has no AMSGrad")
    if c.step_count_scope is not StepCountScope.GLOBAL:
        raise no("step_count_scope", c.step_count_scope.value, "tinygrad has one b1_t/b2_t per optimizer")
    if c.bias_correction_offset != 0:
        raise no("bias_correction_offset", c.bias_correction_offset, "tinygrad's b1_t starts at 1")
    if c.nesterov:
        raise no("nesterov", True, "tinygrad AdamW has no Nesterov form")
    if c.eps_root != 0.0:
        raise no("eps_root", c.eps_root, "tinygrad has no eps inside the sqrt")
    if not isinstance(c.wd_schedule, Constant):
        raise no("wd_schedule", c.wd_schedule.to_json().get("kind", "user"), "weight_decay is a float")


def _import() -> tuple[Any, Any, Any]:
    """``(Tensor, dtypes, nn.optim)``, after checking that the CPU device compiles."""
    try:  # untyped modules, not in mypy's overrides
        tinygrad = importlib.import_module("tinygrad")
        optim = importlib.import_module("tinygrad.nn.optim")
    except ImportError as exc:
        raise FrameworkUnavailable(NAME, f"tinygrad is not installed: {exc}") from None
    try:
        tinygrad.Device["CPU"]
    except Exception as exc:  # tinygrad compiles helper programs with clang when it opens CPU
        raise FrameworkUnavailable(NAME, f"tinygrad's CPU device does not open: {exc!r}") from None
    return tinygrad.Tensor, tinygrad.dtypes, optim


_BF16: dict[str, str] = {}


def _bfloat16_unavailable() -> str:
    """Empty if tinygrad's CPU device compiles a bfloat16 kernel, else the compiler's error
    (clang 14 has no ``__bf16`` on x86: ``error: __bf16 is not supported on this target``)."""
    if "why" not in _BF16:
        import os
        import subprocess
        import tempfile

        Tensor, dtypes, _ = _import()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as err:
            os.dup2(err.fileno(), 2)  # clang writes its diagnostics to our stderr
            try:
                Tensor(np.array([1.0], dtype=np.float32)).cast(dtypes.bfloat16).realize()
                _BF16["why"] = ""
            except subprocess.CalledProcessError as exc:
                _BF16["why"] = f"{exc.cmd[0]} exited with {exc.returncode}"
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            err.seek(0)
            lines = [ln.strip() for ln in err.read().decode(errors="replace").splitlines() if "error:" in ln]
        if _BF16["why"] and lines:
            _BF16["why"] += ": " + lines[0].split("error:", 1)[1].strip()
    return _BF16["why"]


def lr_value(config: AdamWConfig, lr: float, count: int) -> float:
    """The learning rate of a group at schedule count ``count`` (``lr * eta``, float32-rounded
    factors: tinygrad's ``lr`` tensor is float32)."""
    shift = 1 if config.schedule_count is ScheduleCount.POST_INCREMENT else 0
    return float(np.float32(lr) * np.float32(config.lr_schedule(count + shift)))


class TinygradAdamW:
    """Factory for ``tinygrad.nn.optim.AdamW`` runs (implementations ``default``, ``fused``)."""

    info = AdapterInfo(
        name=NAME,
        framework="tinygrad",
        profile="tinygrad",
        implementations=IMPLEMENTATIONS,
        devices=("cpu",),
        dtypes=DTYPES,
        knobs=KNOBS,
        features=FEATURES,
        notes="m, v, lr and the beta powers are float32 whatever the parameter dtype "
        "(OPTIM_DTYPE); every parameter needs a gradient on every step; the CPU device needs clang",
    )

    def versions(self) -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return {"tinygrad": version("tinygrad")}
        except PackageNotFoundError:
            return {"tinygrad": "not installed"}

    def native_defaults(self) -> AdamWConfig:
        """``inspect.signature(tinygrad.nn.optim.AdamW)`` of the installed package."""
        optim = _import()[2]
        p = inspect.signature(optim.AdamW).parameters
        return AdamWConfig(
            lr=float(p["lr"].default),
            beta1=float(p["b1"].default),
            beta2=float(p["b2"].default),
            eps=float(p["eps"].default),
            weight_decay=float(p["weight_decay"].default),
            eps_placement=EpsPlacement.AFTER_BIAS_CORRECTION,
            decay_scaling=DecayScaling.LR,
            decay_form=DecayForm.ADDED_TO_UPDATE,
            decay_timing=DecayTiming.BEFORE_STEP,
            bias_correction=True,
            schedule_count=ScheduleCount.PRE_INCREMENT,
            step_count_scope=StepCountScope.GLOBAL,
        )

    def to_native(self, config: AdamWConfig, implementation: str | None = None) -> dict[str, Any]:
        """``AdamW`` keyword arguments, one dict per parameter group (``names`` ``"*"`` for the
        parameters of no group)."""
        impl = "default" if implementation is None else implementation
        if impl not in IMPLEMENTATIONS:
            raise UnsupportedConfig(
                NAME, "implementation", implementation, f"expected {list(IMPLEMENTATIONS)}"
            )
        if not isinstance(config, AdamWConfig):
            raise AdapterError(f"{NAME}: config must be an AdamWConfig, got {config!r}")
        check_config(config)
        assert isinstance(config.wd_schedule, Constant)
        scale = config.wd_schedule.value
        sched = not (isinstance(config.lr_schedule, Constant) and config.lr_schedule.value == 1.0)
        groups = [("*", config.lr, config.weight_decay)] + [
            (
                list(g.names),
                config.lr if g.lr is None else g.lr,
                config.weight_decay if g.weight_decay is None else g.weight_decay,
            )
            for g in config.groups
        ]
        return {
            "b1": config.beta1,
            "b2": config.beta2,
            "eps": config.eps,
            "fused": impl == "fused",
            "groups": [
                {
                    "names": names,
                    "lr": "lr * eta(count), assigned before each step" if sched else lr,
                    "weight_decay": 0.0 if config.decay_form is DecayForm.NONE else wd * scale,
                }
                for names, lr, wd in groups
            ],
        }

    def create(
        self,
        config: AdamWConfig,
        params: Mapping[str, Array],
        *,
        implementation: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> TinygradRun:
        native = self.to_native(config, implementation)
        if device != "cpu":
            raise FrameworkUnavailable(NAME, f"device={device!r}: this adapter runs tinygrad on CPU")
        if dtype not in DTYPES:
            raise UnsupportedConfig(NAME, "dtype", dtype, f"expected one of {list(DTYPES)}")
        _import()
        if dtype == "bfloat16":
            why = _bfloat16_unavailable()
            if why:
                raise FrameworkUnavailable(NAME, f"bfloat16 does not compile on this CPU device: {why}")
        return TinygradRun(config, native, params, dtype)


class TinygradRun:
    """Live tinygrad AdamW optimizers (one per ``(lr, weight_decay)``) over named Tensors."""

    def __init__(
        self, config: AdamWConfig, native: Mapping[str, Any], params: Mapping[str, Array], dtype: str
    ) -> None:
        from adapters.arrays import as_float64

        Tensor, dtypes, optim = _import()
        if not isinstance(params, Mapping) or not params:
            raise InputError("params", params, "must be a non-empty mapping of name -> array")
        self.Tensor, self.config, self.dtype, self.f32 = Tensor, config, dtype, dtypes.float32
        self.tg_dtype = getattr(dtypes, dtype)
        self.names = list(params)
        arrays = {n: as_float64(params[n], f"params[{n!r}]") for n in self.names}
        self.shapes = {n: a.shape for n, a in arrays.items()}
        self.p = {n: self._tensor(arrays[n]).realize() for n in self.names}
        self.count = 0
        self.sched = not (isinstance(config.lr_schedule, Constant) and config.lr_schedule.value == 1.0)
        by_key: dict[tuple[float, float], list[str]] = {}
        for n in self.names:
            by_key.setdefault(config.group_for(n), []).append(n)
        scale = config.wd_schedule.value if isinstance(config.wd_schedule, Constant) else 1.0
        self.opts: list[tuple[Any, list[str], float]] = []
        for (lr, wd), names in by_key.items():
            opt = optim.AdamW(
                [self.p[n] for n in names],
                lr=lr_value(config, lr, 0) if self.sched else lr,
                b1=float(native["b1"]),
                b2=float(native["b2"]),
                eps=float(native["eps"]),
                weight_decay=0.0 if config.decay_form is DecayForm.NONE else wd * scale,
                fused=bool(native["fused"]),
            )
            self.opts.append((opt, names, lr))
        self.group = optim.OptimizerGroup(*[o for o, _, _ in self.opts])

    def _tensor(self, a: np.ndarray[Any, Any]) -> Any:
        """A Tensor backed by its own buffer. A 0-d numpy array becomes a tinygrad constant,
        and equal constants are one (hash-consed) UOp: two runs' 0-d parameters would share
        state. So every array goes in as 1-d and is reshaped."""
        arr = np.asarray(a)
        if self.dtype in ("float16", "bfloat16"):
            # tinygrad rounds float32 -> 16-bit to nearest (its own cast kernel)
            t = self.Tensor(arr.astype(np.float32).reshape(-1)).cast(self.tg_dtype)
        else:
            t = self.Tensor(arr.astype(np.dtype(self.dtype)).reshape(-1), dtype=self.tg_dtype)
        return t.reshape(arr.shape).contiguous()

    def _np(self, x: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
        if x.dtype.itemsize < 4:
            x = x.cast(self.f32)  # exact
        return np.array(x.numpy(), dtype=np.float64)

    def _moment(self, opt: Any, names: list[str], kind: str, n: str) -> Any:
        buf = getattr(opt, kind)
        i = names.index(n)
        if opt.fused:
            lo, hi = opt.pos_params[i], opt.pos_params[i + 1]
            return buf[0][lo:hi].reshape(self.shapes[n]) if hi > lo else None
        return buf[i]

    def step(self, grads: Mapping[str, Array | None]) -> None:
        from adapters.arrays import as_float64

        Context = importlib.import_module("tinygrad.helpers").Context

        missing = [n for n in self.names if n not in grads]
        extra = [n for n in grads if n not in self.shapes]
        if missing or extra:
            raise InputError("grads", sorted(grads), f"missing {missing}, unknown {extra}")
        for n in self.names:
            g = grads[n]
            if g is None:
                raise UnsupportedConfig(
                    NAME, "frozen", n, "tinygrad's optimizer needs a gradient for every parameter"
                )
            arr = as_float64(g, f"grads[{n!r}]")
            if arr.shape != self.shapes[n]:
                raise InputError(f"grads[{n!r}]", arr.shape, f"expected {self.shapes[n]}")
            self.p[n].grad = self._tensor(-arr if self.config.maximize else arr)
        if self.sched:
            for opt, _, lr in self.opts:
                opt.lr.assign(
                    self.Tensor([lr_value(self.config, lr, self.count)], dtype=opt.lr.dtype)
                ).realize()
        with Context(TRAINING=1):
            self.group.step()
        for n in self.names:
            self.p[n].grad = None
        self.count += 1

    def params(self) -> dict[str, Array]:
        return {n: self._np(self.p[n]) for n in self.names}

    def state(self) -> CanonicalState:
        m: dict[str, Array] = {}
        v: dict[str, Array] = {}
        for opt, names, _ in self.opts:
            for n in names:
                for kind, out in (("m", m), ("v", v)):
                    t = self._moment(opt, names, kind, n)
                    out[n] = np.zeros(self.shapes[n]) if t is None else self._np(t).reshape(self.shapes[n])
        return CanonicalState(
            step=self.count, m={n: m[n] for n in self.names}, v={n: v[n] for n in self.names}, v_max=None
        )

    def save(self, path: Path) -> None:
        """``tinygrad.nn.state.get_state_dict`` of each optimizer (lr, b1_t, b2_t, m, v and
        the parameters), as float32-or-wider arrays."""
        from adapters.arrays import save_arrays

        get_state_dict = importlib.import_module("tinygrad.nn.state").get_state_dict

        arrays: dict[str, Any] = {}
        keys: list[list[str]] = []
        for i, (opt, _, _) in enumerate(self.opts):
            sd = get_state_dict(opt)
            keys.append(sorted(sd))
            for k in sorted(sd):
                arrays[f"opt{i}.{k}"] = self._raw(sd[k])
        meta = {"format": "adamw-ref/tinygrad", "dtype": self.dtype, "keys": keys, "count": self.count}
        save_arrays(path, arrays, meta)

    def _raw(self, t: Any) -> np.ndarray[Any, Any]:
        if t.dtype.itemsize < 4:
            return np.asarray(t.cast(self.f32).numpy())  # exact
        return np.asarray(t.numpy())

    def load(self, path: Path) -> None:
        from adapters.arrays import load_arrays

        get_state_dict = importlib.import_module("tinygrad.nn.state").get_state_dict

        arrays, meta = load_arrays(path)
        if not isinstance(meta, dict) or meta.get("format") != "adamw-ref/tinygrad":
            raise AdapterError(f"{str(path)!r} is not a tinygrad adapter state file")
        keys = [sorted(get_state_dict(o)) for o, _, _ in self.opts]
        if meta.get("keys") != keys or meta.get("dtype") != self.dtype:
            raise AdapterError(f"{str(path)!r}: state keys/dtype differ from this optimizer's")
        for i, (opt, _, _) in enumerate(self.opts):
            sd = get_state_dict(opt)
            for k, t in sd.items():
                src = self.Tensor(arrays[f"opt{i}.{k}"])
                t.assign(src.cast(t.dtype) if src.dtype != t.dtype else src).realize()
        self.count = int(meta["count"])

    def set_state(self, params: Mapping[str, Array], state: CanonicalState) -> None:
        if state.v_max is not None:
            raise InputError("state.v_max", "present", "tinygrad AdamW has no AMSGrad state")
        Tensor = self.Tensor
        for n in self.names:
            self.p[n].assign(self._tensor(np.asarray(params[n], dtype=np.float64))).realize()
        k = int(state.step)
        for opt, names, _ in self.opts:
            for kind, src in (("m", state.m), ("v", state.v)):
                buf = getattr(opt, kind)
                if opt.fused:
                    flat = np.concatenate([np.asarray(src[n], dtype=np.float64).ravel() for n in names])
                    buf[0].assign(Tensor(flat.astype(np.float32)).cast(buf[0].dtype)).realize()
                else:
                    for i, n in enumerate(names):
                        arr = np.asarray(src[n], dtype=np.float64).astype(np.float32)
                        buf[i].assign(Tensor(arr).cast(buf[i].dtype)).realize()
            # b1_t, b2_t hold beta^k after k steps (float32, like tinygrad's running product)
            for acc, beta in ((opt.b1_t, self.config.beta1), (opt.b2_t, self.config.beta2)):
                acc.assign(Tensor([float(np.float32(beta**k))], dtype=acc.dtype)).realize()
        self.count = k

    def close(self) -> None:
        self.opts = []
