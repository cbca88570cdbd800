r"""Operation-order profiles: the exact binary32 operations each real AdamW performs.

The canonical step (:mod:`adamw_ref.update`) fixes *one* order of operations and rounds each
one correctly. The frameworks compute the same algebra in other orders, with fused
multiply-adds, with reciprocals instead of divisions and with elementary functions that are not
correctly rounded. A tolerance hides those differences; a bit-exact prediction shows every one.
This module transcribes, per implementation, the sequence of binary32 operations it performs,
read from its source (or its generated code) and confirmed element for element by experiment
(``tests/adapters/test_bit_exact_*.py``, ``benchmarks/bit_exact.py``, ``docs/bitexact/``).
It leaves the canonical :func:`adamw_ref.step` untouched.

:func:`predict_trajectory` runs one implementation's order over a float32 gradient stream and
returns its parameters and state after every step, bit for bit. Notation in the docstrings:
:math:`\mathrm{fl}` rounds to binary32, :math:`\mathrm{fma}(a,b,c)=\mathrm{fl}(ab+c)` (one
rounding), :math:`\underline{x}` is a binary64 scalar rounded once to binary32 and
:math:`\mathrm{lerp}` is ATen's vectorised ``lerp``:
:math:`\mathrm{fma}(w, \mathrm{fl}(e-s), s)` for :math:`|w|<\tfrac12`, else
:math:`\mathrm{fma}(\mathrm{fl}(w-1), \mathrm{fl}(e-s), e)`.

Measured with torch 2.13.0, jax/jaxlib 0.10.2 with optax 0.2.8, keras 3.15.1 (+ tensorflow
2.21.0) and mlx 0.32.4 on an x86-64 CPU with AVX-512 (AMD EPYC, Zen 5) and glibc 2.36.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adamw_ref import elementary as E
from adamw_ref.config import PRECISION_FIELDS, AdamWConfig
from adamw_ref.errors import ConfigError, InputError
from adamw_ref.knobs import (
    AmsgradMode,
    DecayForm,
    DecayScaling,
    DecayTiming,
    EpsPlacement,
    StepCountScope,
)
from adamw_ref.schedules import Constant
from adamw_ref.state import State
from adamw_ref.step import Trajectory

__all__ = [
    "DEFAULT_PLATFORM",
    "IMPLEMENTATIONS",
    "PLATFORMS",
    "Implementation",
    "Platform",
    "check_supported",
    "predict_trajectory",
]

Vec = list[float]


# ------------------------------------------------------------------------------- platforms
@dataclass(frozen=True)
class Platform:
    """The elementary functions a machine supplies to the frameworks.

    ``vml_sqrt``: PyTorch's float32 ``sqrt`` on contiguous CPU tensors, which ATen hands to
    Intel MKL's ``vsSqrt`` (``VML_HA``): ``"mkl_ex"`` is the kernel MKL picks on AMD
    processors (:func:`adamw_ref.elementary.sqrt_mkl_ex`), ``"correctly_rounded"`` a build
    without MKL (ARM, macOS) or MKL's AVX2 kernel. ``powf``: the C library's binary32 ``pow``
    that XLA, Eigen, MLX and ATen's scalar ``pow`` call: ``"glibc"`` (2.28 onwards,
    :func:`adamw_ref.elementary.powf_glibc`) or ``"correctly_rounded"``."""

    name: str
    vml_sqrt: str
    powf: str
    description: str

    def sqrt_vml(self, xs: Sequence[float]) -> Vec:
        return E.sqrt_mkl_ex(xs) if self.vml_sqrt == "mkl_ex" else E.sqrt(xs)

    def pow32(self, x: float, y: float) -> float:
        return E.powf_glibc(x, y) if self.powf == "glibc" else E.powf_correctly_rounded(x, y)


PLATFORMS: dict[str, Platform] = {
    "x86_64-amd-mkl-glibc": Platform(
        "x86_64-amd-mkl-glibc",
        vml_sqrt="mkl_ex",
        powf="glibc",
        description="x86-64 Linux on an AMD CPU: PyTorch's MKL takes the EX sqrt kernel; glibc powf "
        "(measured: AMD EPYC family 26, glibc 2.36)",
    ),
    "ieee": Platform(
        "ieee",
        vml_sqrt="correctly_rounded",
        powf="correctly_rounded",
        description="every elementary function correctly rounded (torch without MKL, a "
        "correctly rounded libm)",
    ),
}
DEFAULT_PLATFORM = "x86_64-amd-mkl-glibc"


# --------------------------------------------------------------------- per-step computation
@dataclass(frozen=True)
class _Ctx:
    """What one parameter's update needs: its count ``k``, learning rate ``lr`` (binary64,
    scheduled), decay ``wd`` (0 when masked or ``decay_form=none``), the config, the platform."""

    k: int
    lr: float
    wd: float
    cfg: AdamWConfig
    plat: Platform


Slots = tuple[Vec, Vec, Vec, Vec | None]
Update = Callable[[Vec, Vec, Vec, Vec, "Vec | None", _Ctx], Slots]


def _lerp(m: Vec, g: Vec, w: float) -> Vec:
    d = E.sub(g, m)
    if abs(w) < 0.5:
        return E.fma_s(w, d, m)
    return E.fma_s(E.f32(w - 1.0), d, g)


def _denominator_torch(src: Vec, bc2_sqrt: float, eps: float, sqrt: Callable[[Sequence[float]], Vec]) -> Vec:
    return E.add_s(E.div_s(sqrt(src), E.f32(bc2_sqrt)), E.f32(eps))


def _torch_loop(th: Vec, g: Vec, m: Vec, v: Vec, vm: Vec | None, c: _Ctx) -> Slots:
    r"""``_single_tensor_adam`` / ``_multi_tensor_adam`` (CPU: ``torch._foreach_*`` fall back
    to the same per-tensor kernels). Scalars in binary64 (Python floats), rounded once when a
    kernel takes them: :math:`\theta\leftarrow\mathrm{fl}(\theta\,\underline{1-\alpha\lambda})`;
    :math:`m\leftarrow\mathrm{lerp}(m,g,\underline{1-\beta_1})`;
    :math:`v\leftarrow\mathrm{fma}(\mathrm{fl}(\underline{1-\beta_2}\,g), g,
    \mathrm{fl}(v\,\underline{\beta_2}))` (``mul_`` then ``addcmul_``, contracted);
    :math:`d=\mathrm{fl}(\mathrm{fl}(\sqrt[\mathrm{vml}]{v}/\underline{\sqrt{b_2}})+\underline\epsilon)`;
    :math:`\theta\leftarrow\mathrm{fl}(\theta+\mathrm{fl}(\mathrm{fl}(\underline{-\alpha/b_1}\,m)/d))`
    (``addcdiv_``), with :math:`b_i = 1-\beta_i^{k}` and :math:`\sqrt{b_2}` = ``b2**0.5`` in
    binary64."""
    cfg = c.cfg
    if c.wd != 0.0:
        th = E.mul_s(th, E.f32(1.0 - c.lr * c.wd))
    m = _lerp(m, g, E.f32(1.0 - cfg.beta1))
    v = E.fma(E.mul_s(g, E.f32(1.0 - cfg.beta2)), g, E.mul_s(v, E.f32(cfg.beta2)))
    step = float(c.k)
    bc1, bc2 = 1.0 - cfg.beta1**step, 1.0 - cfg.beta2**step
    src = v
    if vm is not None:
        vm = src = E.maximum(vm, v)
    den = _denominator_torch(src, bc2**0.5, cfg.eps, c.plat.sqrt_vml)
    th = E.add(th, E.div(E.mul_s(m, E.f32(-(c.lr / bc1))), den))
    return th, m, v, vm


def _torch_fused(th: Vec, g: Vec, m: Vec, v: Vec, vm: Vec | None, c: _Ctx) -> Slots:
    r"""``_fused_adamw_`` (``aten/src/ATen/native/cpu/FusedAdamKernel.cpp``): as the loop but
    with the correctly rounded ``Vectorized::sqrt``, :math:`\sqrt{b_2}` by ``std::sqrt``, and
    the second moment of the last ``numel % 8`` elements (the kernel's scalar remainder, after
    the 16-wide AVX-512 loop and an 8-wide epilogue) contracted the other way:
    :math:`\mathrm{fma}(v, \underline{\beta_2}, \mathrm{fl}(\mathrm{fl}(\underline{1-\beta_2}\,g)\,g))`."""
    cfg = c.cfg
    if c.wd != 0.0:
        th = E.mul_s(th, E.f32(1.0 - c.lr * c.wd))
    m = _lerp(m, g, E.f32(1.0 - cfg.beta1))
    b2, c2 = E.f32(cfg.beta2), E.f32(1.0 - cfg.beta2)
    cg = E.mul_s(g, c2)
    tail = len(v) % 8
    head = len(v) - tail
    v = E.fma(cg[:head], g[:head], E.mul_s(v[:head], b2)) + E.fma_s(b2, v[head:], E.mul(cg[head:], g[head:]))
    step = float(c.k)
    bc1, bc2 = 1.0 - cfg.beta1**step, 1.0 - cfg.beta2**step
    src = v
    if vm is not None:
        vm = src = E.maximum(vm, v)
    den = _denominator_torch(src, math.sqrt(bc2), cfg.eps, E.sqrt)
    th = E.add(th, E.div(E.mul_s(m, E.f32(-(c.lr / bc1))), den))
    return th, m, v, vm


def _fma_s_rev(o: E.Binary32Ops, xs: Sequence[float], c: float, zs: Sequence[float]) -> Vec:
    return o.fma(xs, [c] * len(xs), zs)


def _optax(th: Vec, g: Vec, m: Vec, v: Vec, vm: Vec | None, c: _Ctx, *, jit: bool) -> Slots:
    r"""``optax.adamw`` (``scale_by_adam``, ``add_decayed_weights``, ``scale_by_learning_rate``,
    ``apply_updates``). Scalars are binary32 constants (:math:`\underline{1-\beta_1}` etc.), and
    :math:`r_i=\mathrm{fl}(1/\mathrm{fl}(1-\mathrm{powf}(\underline{\beta_i}, k)))`: XLA's
    algebraic simplifier turns the bias corrections' divisions into multiplications by these
    reciprocals. Under ``jax.jit`` (XLA CPU, LLVM contracting into FMAs):

    .. math::

       m &\leftarrow \mathrm{fma}(g, \underline{1-\beta_1}, \mathrm{fl}(m\,\underline{\beta_1})),\quad
       v \leftarrow \mathrm{fma}(\mathrm{fl}(g g), \underline{1-\beta_2},
         \mathrm{fl}(v\,\underline{\beta_2})) \\
       u &= \mathrm{fl}\big(\mathrm{fl}(m r_1) /
         \mathrm{fl}(\mathrm{fl}(\sqrt{\mathrm{fl}(v r_2)}) + \underline\epsilon)\big) \\
       \theta &\leftarrow \mathrm{fma}(\mathrm{fma}(\theta, \underline\lambda, u),
         \underline{-\alpha}, \theta)

    Without jit every operation is rounded on its own:
    :math:`m\leftarrow\mathrm{fl}(\mathrm{fl}(\underline{1-\beta_1}g)+\mathrm{fl}(\underline{\beta_1}m))`,
    the same :math:`u`, and
    :math:`\theta\leftarrow\mathrm{fl}(\theta+\mathrm{fl}(\underline{-\alpha}\,
    \mathrm{fl}(u+\mathrm{fl}(\underline\lambda\theta))))`."""
    cfg, o = c.cfg, E.FLUSH_TO_ZERO
    th, g, m, v = E.daz(th), E.daz(g), E.daz(m), E.daz(v)
    b1, c1 = o.f32(cfg.beta1), o.f32(1.0 - cfg.beta1)
    b2, c2 = o.f32(cfg.beta2), o.f32(1.0 - cfg.beta2)
    g2 = o.mul(g, g)
    if jit:
        m = _fma_s_rev(o, g, c1, o.mul_s(m, b1))
        v = _fma_s_rev(o, g2, c2, o.mul_s(v, b2))
    else:
        m = o.add(o.mul_s(g, c1), o.mul_s(m, b1))
        v = o.add(o.mul_s(g2, c2), o.mul_s(v, b2))
    kf = o.f32(float(c.k))
    p1, p2 = o.f32(c.plat.pow32(b1, kf)), o.f32(c.plat.pow32(b2, kf))  # FTZ: a subnormal power is 0
    r1, r2 = o.f32(1.0 / o.f32(1.0 - p1)), o.f32(1.0 / o.f32(1.0 - p2))
    u = o.div(o.mul_s(m, r1), o.add_s(o.sqrt(o.mul_s(v, r2)), o.f32(cfg.eps)))
    lr = o.f32(-c.lr)
    if jit:
        upd = _fma_s_rev(o, th, o.f32(c.wd), u) if c.wd != 0.0 else u
        th = _fma_s_rev(o, upd, lr, th)
    else:
        upd = o.add(u, o.mul_s(th, o.f32(c.wd))) if c.wd != 0.0 else u
        th = o.add(th, o.mul_s(upd, lr))
    return th, m, v, vm


def _keras(th: Vec, g: Vec, m: Vec, v: Vec, vm: Vec | None, c: _Ctx, *, torch: bool) -> Slots:
    r"""``keras.optimizers.AdamW`` (Keras 3), eager ``apply``. The decay comes first (the base
    optimizer's ``_apply_weight_decay``):
    :math:`\theta\leftarrow\mathrm{fl}(\theta-\mathrm{fl}(\mathrm{fl}(\theta\underline\lambda)\,
    \underline\alpha))` (JAX, TensorFlow) or
    :math:`\mathrm{fl}(\theta\,\mathrm{fl}(1-\mathrm{fl}(\underline\alpha\,\underline\lambda)))`
    (torch backend, ``torch._foreach_mul_``). Then, with :math:`p_i=\mathrm{powf}(\underline{\beta_i},
    \underline{k})`:

    .. math::

       a &= \mathrm{fl}\big(\mathrm{fl}(\underline\alpha\sqrt{\mathrm{fl}(1-p_2)}) /
         \mathrm{fl}(1-p_1)\big) \\
       m &\leftarrow \mathrm{fl}(m+\mathrm{fl}(\mathrm{fl}(g-m)\,\underline{1-\beta_1})),\quad
       v \leftarrow \mathrm{fl}(v+\mathrm{fl}(\mathrm{fl}(\mathrm{fl}(gg)-v)\,\underline{1-\beta_2}))
         \quad(\text{JAX, TensorFlow}) \\
       m &\leftarrow \mathrm{fma}(g,\underline{1-\beta_1},\mathrm{fl}(m\underline{\beta_1})),\quad
       v \leftarrow \mathrm{fma}(\mathrm{fl}(gg),\underline{1-\beta_2},\mathrm{fl}(v\underline{\beta_2}))
         \quad(\text{torch: } \texttt{\_foreach\_add\_(alpha=)}) \\
       \theta &\leftarrow \mathrm{fl}\big(\theta - \mathrm{fl}(\mathrm{fl}(m a) /
         \mathrm{fl}(\sqrt{v}+\underline{\hat\epsilon}))\big)

    with AMSGrad's :math:`\hat v\leftarrow\max(\hat v, v)` in place of :math:`v`; the torch
    backend's square roots are MKL's."""
    cfg = c.cfg
    o = E.IEEE if torch else E.FLUSH_TO_ZERO  # XLA's and TensorFlow's CPU runtimes set FTZ/DAZ
    if not torch:
        th, g, m, v = E.daz(th), E.daz(g), E.daz(m), E.daz(v)
    lr, wd = o.f32(c.lr), o.f32(c.wd)
    sq = c.plat.sqrt_vml if torch else o.sqrt
    if c.wd != 0.0:
        th = o.mul_s(th, o.f32(1.0 - o.f32(lr * wd))) if torch else o.sub(th, o.mul_s(o.mul_s(th, wd), lr))
    kf = o.f32(float(c.k))
    p1, p2 = o.f32(c.plat.pow32(o.f32(cfg.beta1), kf)), o.f32(c.plat.pow32(o.f32(cfg.beta2), kf))
    alpha = o.f32(o.f32(lr * sq([o.f32(1.0 - p2)])[0]) / o.f32(1.0 - p1))
    c1, c2 = o.f32(1.0 - cfg.beta1), o.f32(1.0 - cfg.beta2)
    if torch:
        m = _fma_s_rev(o, g, c1, o.mul_s(m, o.f32(cfg.beta1)))
        v = _fma_s_rev(o, o.mul(g, g), c2, o.mul_s(v, o.f32(cfg.beta2)))
    else:
        m = o.add(m, o.mul_s(o.sub(g, m), c1))
        v = o.add(v, o.mul_s(o.sub(o.mul(g, g), v), c2))
    src = v
    if vm is not None:
        vm = src = o.maximum(vm, v)
    th = o.sub(th, o.div(o.mul_s(m, alpha), o.add_s(sq(src), o.f32(cfg.eps))))
    return th, m, v, vm


def _mlx(th: Vec, g: Vec, m: Vec, v: Vec, vm: Vec | None, c: _Ctx) -> Slots:
    r"""``mlx.optimizers.AdamW`` (CPU), every operation rounded on its own:

    .. math::

       \theta' &= \mathrm{fl}(\theta\,\mathrm{fl}(1-\mathrm{fl}(\underline\alpha\,\underline\lambda))) \\
       m &\leftarrow \mathrm{fl}(\mathrm{fl}(\underline{\beta_1}m)+\mathrm{fl}(\underline{1-\beta_1}g)),
       \quad v \leftarrow \mathrm{fl}(\mathrm{fl}(\underline{\beta_2}v)+
         \mathrm{fl}(\underline{1-\beta_2}\,\mathrm{fl}(gg))) \\
       c_1 &= \mathrm{fl}(\underline\alpha/\mathrm{fl}(1-\mathrm{powf}(\underline{\beta_1},\underline{k}))),
       \quad c_2 = \mathrm{fl}(1/\mathrm{fl}(\sqrt{\mathrm{fl}(1-\mathrm{powf}(\underline{\beta_2},
         \underline{k}))})) \\
       \theta &\leftarrow \mathrm{fl}\big(\theta'-\mathrm{fl}(\mathrm{fl}(c_1m)/
         \mathrm{fl}(\mathrm{fl}(\sqrt v\,c_2)+\underline\epsilon))\big)

    (``mx.rsqrt`` is the reciprocal of a square root: two roundings). Without bias correction
    :math:`\theta\leftarrow\mathrm{fl}(\theta'-\mathrm{fl}(\mathrm{fl}(\underline\alpha m)/
    \mathrm{fl}(\sqrt v+\underline\epsilon)))`."""
    cfg = c.cfg
    lr = E.f32(c.lr)
    if c.wd != 0.0:
        th = E.mul_s(th, E.f32(1.0 - E.f32(lr * E.f32(c.wd))))
    m = E.add(E.mul_s(m, E.f32(cfg.beta1)), E.mul_s(g, E.f32(1.0 - cfg.beta1)))
    v = E.add(E.mul_s(v, E.f32(cfg.beta2)), E.mul_s(E.mul(g, g), E.f32(1.0 - cfg.beta2)))
    root = E.sqrt(v)
    if cfg.bias_correction:
        kf = E.f32(float(c.k))
        c1 = E.f32(lr / E.f32(1.0 - c.plat.pow32(E.f32(cfg.beta1), kf)))
        c2 = E.f32(1.0 / E.f32(math.sqrt(E.f32(1.0 - c.plat.pow32(E.f32(cfg.beta2), kf)))))
        th = E.sub(th, E.div(E.mul_s(m, c1), E.add_s(E.mul_s(root, c2), E.f32(cfg.eps))))
    else:
        th = E.sub(th, E.div(E.mul_s(m, lr), E.add_s(root, E.f32(cfg.eps))))
    return th, m, v, vm


# --------------------------------------------------------------------------- implementations
@dataclass(frozen=True)
class Implementation:
    """One implementation's operation order and the configurations it can express.

    ``knobs``: the knob values it computes (a config with another value is refused);
    ``scope``: whose count indexes the bias correction (frozen parameters);
    ``amsgrad``: whether AMSGrad is available; ``lr_schedules``: whether a scheduled learning
    rate is covered (``lr * eta(c)`` in binary64, as ``LambdaLR`` computes it)."""

    name: str
    framework: str
    summary: str
    knobs: Mapping[str, tuple[Any, ...]]
    scope: StepCountScope
    amsgrad: bool
    lr_schedules: bool
    update: Update
    page: str

    @property
    def formula(self) -> str:
        """The operation order (LaTeX in the docstring of the function that performs it)."""
        fn = getattr(self.update, "func", self.update)
        return (fn.__doc__ or "").strip()


def _partial(fn: Callable[..., Slots], **kw: bool) -> Update:
    def update(th: Vec, g: Vec, m: Vec, v: Vec, vm: Vec | None, c: _Ctx) -> Slots:
        return fn(th, g, m, v, vm, c, **kw)

    update.func = fn  # type: ignore[attr-defined]
    return update


_TORCH_KNOBS: dict[str, tuple[Any, ...]] = {
    "eps_placement": (EpsPlacement.AFTER_BIAS_CORRECTION,),
    "decay_scaling": (DecayScaling.LR,),
    "decay_form": (DecayForm.MULTIPLICATIVE, DecayForm.NONE),
    "decay_timing": (DecayTiming.BEFORE_STEP,),
    "bias_correction": (True,),
    "amsgrad_mode": (AmsgradMode.RAW_V,),
    "bias_correction_offset": (0,),
}
_KERAS_KNOBS = dict(_TORCH_KNOBS, eps_placement=(EpsPlacement.BEFORE_BIAS_CORRECTION,))
_OPTAX_KNOBS = dict(_TORCH_KNOBS, decay_form=(DecayForm.ADDED_TO_UPDATE, DecayForm.NONE))
_MLX_KNOBS = dict(_TORCH_KNOBS, bias_correction=(True, False))
_G, _P = StepCountScope.GLOBAL, StepCountScope.PER_PARAMETER

IMPLEMENTATIONS: dict[str, Implementation] = {
    i.name: i
    for i in (
        Implementation(
            "torch:forloop", "torch 2.13.0", "torch.optim.AdamW(foreach=False), CPU float32",
            _TORCH_KNOBS, _P, True, True, _torch_loop, "torch.md",
        ),
        Implementation(
            "torch:foreach", "torch 2.13.0", "torch.optim.AdamW(foreach=True), CPU float32",
            _TORCH_KNOBS, _P, True, True, _torch_loop, "torch.md",
        ),
        Implementation(
            "torch:fused", "torch 2.13.0", "torch.optim.AdamW(fused=True), CPU float32 (AVX-512)",
            _TORCH_KNOBS, _P, True, True, _torch_fused, "torch.md",
        ),
        Implementation(
            "optax:jit", "optax 0.2.8, jax 0.10.2", "jax.jit(optax.adamw(lr)), XLA CPU float32",
            _OPTAX_KNOBS, _G, False, False, _partial(_optax, jit=True), "optax.md",
        ),
        Implementation(
            "optax:nojit", "optax 0.2.8, jax 0.10.2", "optax.adamw(lr), eager jax, CPU float32",
            _OPTAX_KNOBS, _G, False, False, _partial(_optax, jit=False), "optax.md",
        ),
        Implementation(
            "keras-jax:default", "keras 3.15.1 (jax 0.10.2)", "keras.optimizers.AdamW.apply, CPU float32",
            _KERAS_KNOBS, _G, True, False, _partial(_keras, torch=False), "keras.md",
        ),
        Implementation(
            "keras-tensorflow:default", "keras 3.15.1 (tensorflow 2.21.0)",
            "keras.optimizers.AdamW.apply, CPU float32",
            _KERAS_KNOBS, _G, True, False, _partial(_keras, torch=False), "keras.md",
        ),
        Implementation(
            "keras-torch:default", "keras 3.15.1 (torch 2.13.0)", "keras.optimizers.AdamW.apply, CPU float32",
            _KERAS_KNOBS, _G, True, False, _partial(_keras, torch=True), "keras.md",
        ),
        Implementation(
            "mlx:default", "mlx 0.32.4", "mlx.optimizers.AdamW, CPU float32",
            _MLX_KNOBS, _G, False, False, _mlx, "mlx.md",
        ),
    )
}  # fmt: skip


def _implementation(name: str) -> Implementation:
    impl = IMPLEMENTATIONS.get(name)
    if impl is None:
        raise ConfigError("implementation", name, f"unknown; expected one of {sorted(IMPLEMENTATIONS)}")
    return impl


def check_supported(implementation: str, config: AdamWConfig) -> None:
    """Raise :class:`~adamw_ref.errors.ConfigError` for the first part of ``config`` that
    ``implementation``'s operation order does not cover."""
    impl = _implementation(implementation)
    for knob, allowed in impl.knobs.items():
        if knob == "amsgrad_mode" and not config.amsgrad:
            continue
        value = getattr(config, knob)
        if value not in allowed:
            shown = value.value if hasattr(value, "value") else value
            raise ConfigError(
                knob, shown, f"{impl.name} computes {[getattr(a, 'value', a) for a in allowed]}"
            )
    if config.amsgrad and not impl.amsgrad:
        raise ConfigError("amsgrad", True, f"{impl.name} has no AMSGrad")
    if config.nesterov:
        raise ConfigError("nesterov", True, f"no operation order for nesterov in {impl.name}")
    if config.eps_root != 0.0:
        raise ConfigError("eps_root", config.eps_root, f"{impl.name}: only eps_root=0 is modelled")
    if not isinstance(config.wd_schedule, Constant):
        raise ConfigError("wd_schedule", config.wd_schedule.to_json(), "only a constant decay schedule")
    constant_lr = isinstance(config.lr_schedule, Constant) and config.lr_schedule.value == 1.0
    if not (impl.lr_schedules or constant_lr):
        raise ConfigError("lr_schedule", config.lr_schedule.to_json(), f"{impl.name}: constant lr only")
    for name in PRECISION_FIELDS:
        if getattr(config, name) is not None:
            raise ConfigError(name, getattr(config, name), f"{impl.name}: only float32 state is modelled")
    for group in config.groups:
        if group.lr is not None and impl.name.startswith("keras"):
            raise ConfigError("groups.lr", group.lr, "keras has one learning rate per optimizer")


# ------------------------------------------------------------------------------------ driver
def _as_f32(name: str, xs: Sequence[Any]) -> Vec:
    out = E.r32([float(x) for x in xs])
    if any(x != float(y) for x, y in zip(out, xs) if x == x):
        raise InputError(name, "values", "must be binary32 values (round them to float32 first)")
    return out


def predict_trajectory(
    implementation: str,
    config: AdamWConfig,
    params: Mapping[str, Sequence[float]],
    grads: Iterable[Mapping[str, Sequence[float] | None]],
    *,
    platform: str = DEFAULT_PLATFORM,
) -> Trajectory:
    """The parameters and state ``implementation`` produces, bit for bit, after every step.

    ``params`` and every gradient must hold binary32 values (Python floats); ``None`` freezes a
    parameter for that step (no decay, no moment update). Returns a
    :class:`~adamw_ref.step.Trajectory`: ``params[t]`` and ``states[t]`` (``m``, ``v``,
    ``v_max``, ``step``, ``param_steps``) after ``t`` steps, index 0 the initial point.
    ``platform`` names the elementary functions of the machine (:data:`PLATFORMS`)."""
    impl = _implementation(implementation)
    check_supported(implementation, config)
    plat = PLATFORMS.get(platform)
    if plat is None:
        raise ConfigError("platform", platform, f"unknown; expected one of {sorted(PLATFORMS)}")
    cur = {n: _as_f32(f"params[{n!r}]", xs) for n, xs in params.items()}
    zeros = {n: tuple(0.0 for _ in xs) for n, xs in cur.items()}
    state = State(
        step=0,
        param_steps={n: 0 for n in cur},
        m=dict(zeros),
        v=dict(zeros),
        v_max=dict(zeros) if config.amsgrad else None,
    )
    out_p: list[dict[str, tuple[Any, ...]]] = [{n: tuple(x) for n, x in cur.items()}]
    out_s: list[State[Any]] = [state]
    for grad in grads:
        cur, state = _step(impl, config, plat, cur, grad, state)
        out_p.append({n: tuple(x) for n, x in cur.items()})
        out_s.append(state)
    return Trajectory(params=out_p, states=out_s)


def _step(
    impl: Implementation,
    cfg: AdamWConfig,
    plat: Platform,
    cur: dict[str, Vec],
    grad: Mapping[str, Sequence[float] | None],
    state: State[Any],
) -> tuple[dict[str, Vec], State[Any]]:
    t = state.step + 1
    count = t - 1 if cfg.schedule_count.value == "pre_increment" else t
    eta, omega = cfg.lr_schedule(count), cfg.wd_schedule(count)
    new: dict[str, Vec] = {}
    m, v = dict(state.m), dict(state.v)
    vmax = None if state.v_max is None else dict(state.v_max)
    steps = dict(state.param_steps)
    for name, theta in cur.items():
        if name not in grad:
            raise InputError("grads", sorted(grad), f"missing a gradient for {name!r} (use None to freeze)")
        g = grad[name]
        if g is None:
            if impl.scope is not cfg.step_count_scope:
                raise InputError(
                    f"grads[{name!r}]", None, f"a frozen parameter needs step_count_scope={impl.scope.value}"
                )
            new[name] = theta
            continue
        gv = _as_f32(f"grads[{name!r}]", g)
        if len(gv) != len(theta):
            raise InputError(f"grads[{name!r}]", len(gv), f"parameter has length {len(theta)}")
        if cfg.maximize:
            gv = [-x for x in gv]
        lr, wd = cfg.group_for(name)
        wd = 0.0 if cfg.decay_form is DecayForm.NONE else (wd * omega if omega != 1.0 else wd)
        steps[name] += 1
        ctx = _Ctx(k=steps[name] if impl.scope is _P else t, lr=lr * eta, wd=wd, cfg=cfg, plat=plat)
        vm_prev = None if vmax is None else list(vmax[name])
        th, mm, vv, vm = impl.update(theta, gv, list(m[name]), list(v[name]), vm_prev, ctx)
        new[name], m[name], v[name] = th, tuple(mm), tuple(vv)
        if vmax is not None and vm is not None:
            vmax[name] = tuple(vm)
    return new, State(step=t, param_steps=steps, m=m, v=v, v_max=vmax)
