r"""Adapters for the AdamW variants of ``pytorch_optimizer`` (v4.1.0), built as a plugin would be.

Each claims AdamW (``info.profile = "torch"``); the knob tables declare what the code really
computes (read from ``pytorch_optimizer/optimizer/*.py``):

* ``StableAdamW`` (``adamw.py``): debiased betas
  :math:`\hat\beta_t=\beta(1-\beta^{t-1})/(1-\beta^t)` keep :math:`\hat m,\hat v` directly
  (equal to bias correction), epsilon after it, one step count per group (``global``), default
  :math:`\beta_2=0.99`, and an extra mechanism that is no knob of the spec: the learning rate
  of each tensor is divided by :math:`\max(1,\mathrm{RMS}(g/\sqrt{\max(\hat v,\epsilon^2)}))`,
  for the update and the decay alike (update clipping). ``kahan_sum`` only acts on 16-bit
  parameters.
* ``AdamC`` (``adamc.py``): ``(sqrt(v + 1e-15) + eps) / sqrt(1 - beta2^t)``: epsilon *before*
  bias correction and a fixed ``eps_root`` of 1e-15; per-group step count; ``ams_bound`` is
  AMSGrad on the raw :math:`v`; ``fixed_decay`` gives unscaled decay; default
  ``weight_decay=0``. Its corrected decay for normalisation layers (``normalized`` groups,
  :math:`\lambda\alpha_t^2/\alpha_{max}`) is not used here.
* ``FlashAdamW`` (``flash_adamw.py``): the torch formula with one step count per group; by
  default the moments are stored as grouped 8-bit codes with fp16 scales (``quantize=True``),
  the extra mechanism. ``decouple_lr=True`` scales the decay by :math:`\alpha_t/\alpha_0`
  (the ``schedule_multiplier`` knob).

The canonical state read back is :math:`(m, v)` of the spec; for StableAdamW it is converted
from the stored :math:`\hat m,\hat v` by multiplying with :math:`1-\beta^k` (one rounding).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any, ClassVar

from adamw_ref import AdamWConfig, StepCountScope
from adapters.errors import AdapterError, FrameworkUnavailable
from adapters.protocol import AdapterInfo, Array, Support
from adapters.torch.common import TORCH_DTYPES, decay_active, import_torch, refuse_unsupported
from adapters.torch.run import TorchRun

N, E, U = Support.NATIVE, Support.EMULATED, Support.UNSUPPORTED

_COMMON_KNOBS: dict[str, dict[str, Support]] = {
    "eps_placement": {"after_bias_correction": N, "before_bias_correction": U},
    "decay_scaling": {"lr": N, "schedule_multiplier": U, "unscaled": U},
    "decay_form": {"multiplicative": N, "none": N, "proximal": U, "added_to_update": U, "coupled_l2": U},
    "decay_timing": {"before_step": N, "after_step": U},
    "bias_correction": {"true": N, "false": U},
    "amsgrad_mode": {"raw_v": U, "bias_corrected_v": U},
    "schedule_count": {"pre_increment": N, "post_increment": E},
    "step_count_scope": {"per_parameter": U, "global": N},
    "bias_correction_offset": {"0": N},
}

_COMMON_FEATURES: dict[str, Support] = {
    "amsgrad": U,
    "maximize": N,
    "nesterov": U,
    "eps_root": U,
    "lr_schedule": N,
    "wd_schedule": U,
    "groups": N,
    "frozen": N,
    "save_load": N,
}


def _po(adapter: str) -> Any:
    import_torch(adapter)
    try:
        import pytorch_optimizer
    except ImportError as exc:
        raise FrameworkUnavailable(adapter, f"pytorch_optimizer is not installed ({exc})") from None
    return pytorch_optimizer


class GroupStepRun(TorchRun):
    """A run whose optimizer keeps one ``group['step']`` per group (``global`` scope)."""

    def read_slot(self, p: Any) -> tuple[int, Any, Any, Any]:
        st = self.optimizer.state.get(p, {})
        k = int(self._group(p).get("step", 0))
        if "exp_avg" not in st:
            return k, None, None, None
        return k, st["exp_avg"], st["exp_avg_sq"], st.get("max_exp_avg_sq")

    def write_slot(self, p: Any, k: int, m: Any, v: Any, vmax: Any) -> None:
        st = self.optimizer.state[p]
        st["exp_avg"], st["exp_avg_sq"] = m, v
        if vmax is not None or self._group(p).get("ams_bound"):
            st["max_exp_avg_sq"] = vmax if vmax is not None else v.new_zeros(v.shape)

    def set_step_count(self, steps: int) -> None:
        for g in self.optimizer.param_groups:
            g["step"] = steps

    def _group(self, p: Any) -> dict[str, Any]:
        return next(g for g in self.optimizer.param_groups if any(q is p for q in g["params"]))


class StableAdamWRun(GroupStepRun):
    """StableAdamW stores the bias-corrected moments; the canonical ones are ``(1-beta^k)`` x."""

    def read_slot(self, p: Any) -> tuple[int, Any, Any, Any]:
        k, m, v, _ = super().read_slot(p)
        if m is None or k == 0:
            return k, m, v, None
        b1, b2 = self._group(p)["betas"]
        return k, m * (1.0 - b1**k), v * (1.0 - b2**k), None

    def write_slot(self, p: Any, k: int, m: Any, v: Any, vmax: Any) -> None:
        import torch

        g = self._group(p)
        if k > 0:
            b1, b2 = g["betas"]
            m, v = m / (1.0 - b1**k), v / (1.0 - b2**k)
        st = self.optimizer.state[p]
        st["exp_avg"] = m
        st["exp_avg_sq"] = v.float() if p.dtype == torch.float16 else v
        low = p.dtype in (torch.float16, torch.bfloat16)
        st["kahan_comp"] = torch.zeros_like(p) if g["kahan_sum"] and low else None


class FlashAdamWRun(GroupStepRun):
    """FlashAdamW may keep its moments as 8-bit codes; read and write through its own helpers."""

    def read_slot(self, p: Any) -> tuple[int, Any, Any, Any]:
        from pytorch_optimizer.optimizer.flash_adamw import materialize_state

        st = self.optimizer.state.get(p, {})
        k = int(self._group(p).get("step", 0))
        if not any(key.startswith("exp_avg") for key in st):
            return k, None, None, None
        return k, materialize_state(st, "exp_avg"), materialize_state(st, "exp_avg_sq"), None

    def write_slot(self, p: Any, k: int, m: Any, v: Any, vmax: Any) -> None:
        import torch
        from pytorch_optimizer.optimizer.flash_adamw import store_state

        st, q = self.optimizer.state[p], bool(self._group(p)["quantize"])
        wide = torch.float64 if p.dtype == torch.float64 else torch.float32
        store_state(st, "exp_avg", m.to(wide), q, p.dtype)
        store_state(st, "exp_avg_sq", v.to(wide), q, p.dtype)


class _PytorchOptimizerAdapter:
    """Base: a ``pytorch_optimizer`` class behind the adapter protocol.

    Subclasses set ``CLASS``, ``INFO``, ``IMPLEMENTATIONS``, ``RUN`` and ``FIXED_EPS_ROOT``, and
    may extend :meth:`_kwargs`. ``info`` is set per instance (the class is a factory).
    """

    CLASS = ""
    INFO: AdapterInfo
    IMPLEMENTATIONS: ClassVar[dict[str, dict[str, Any]]] = {}
    RUN: type[TorchRun] = GroupStepRun
    FIXED_EPS_ROOT = 0.0

    def __init__(self) -> None:
        self.info: AdapterInfo = self.INFO

    def _cls(self) -> Any:
        return getattr(_po(self.info.name), self.CLASS)

    def versions(self) -> dict[str, str]:
        torch = import_torch(self.info.name)
        _po(self.info.name)
        try:
            po_version = version("pytorch_optimizer")
        except PackageNotFoundError:  # importable without distribution metadata
            po_version = "unknown"
        return {"pytorch_optimizer": po_version, "torch": str(torch.__version__)}

    def _default_knobs(self, sig: Mapping[str, inspect.Parameter]) -> dict[str, Any]:
        return {"step_count_scope": StepCountScope.GLOBAL}

    def native_defaults(self) -> AdamWConfig:
        """The installed constructor's defaults (``inspect.signature``) + the declared knobs."""
        sig = inspect.signature(self._cls().__init__).parameters
        beta1, beta2 = sig["betas"].default
        return AdamWConfig(
            lr=float(sig["lr"].default),
            beta1=float(beta1),
            beta2=float(beta2),
            eps=float(sig["eps"].default),
            weight_decay=float(sig["weight_decay"].default),
            maximize=bool(sig["maximize"].default),
            eps_root=self.FIXED_EPS_ROOT,
            **self._default_knobs(sig),
        )

    def _kwargs(self, config: AdamWConfig) -> dict[str, Any]:
        wd = config.weight_decay * config.wd_schedule(0) if decay_active(config) else 0.0
        return {
            "lr": config.lr,
            "betas": (config.beta1, config.beta2),
            "eps": config.eps,
            "weight_decay": wd,
            "maximize": config.maximize,
        }

    def to_native(self, config: AdamWConfig, implementation: str | None = None) -> dict[str, Any]:
        refuse_unsupported(self.info, config, self.FIXED_EPS_ROOT)
        if implementation is not None and implementation not in self.IMPLEMENTATIONS:
            raise AdapterError(
                f"{self.info.name}: implementation {implementation!r} unknown; expected one of "
                f"{list(self.IMPLEMENTATIONS)} or None (the package default)"
            )
        kwargs = self._kwargs(config)
        if implementation is not None:
            kwargs.update(self.IMPLEMENTATIONS[implementation])
        return kwargs

    def create(
        self,
        config: AdamWConfig,
        params: Mapping[str, Array],
        *,
        implementation: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> TorchRun:
        kwargs = self.to_native(config, implementation)
        cls = self._cls()
        if not decay_active(config):
            config = config.replace(
                weight_decay=0.0, groups=tuple(g.__class__(g.names, g.lr, 0.0) for g in config.groups)
            )

        def make(groups: list[dict[str, Any]]) -> Any:
            return cls(groups, **kwargs)

        return self.RUN(self.info.name, make, config, params, device=device, dtype=dtype)


def _info(
    name: str,
    knobs: Mapping[str, Mapping[str, Support]],
    features: Mapping[str, Support],
    implementations: tuple[str, ...],
    notes: str,
) -> AdapterInfo:
    return AdapterInfo(
        name=name,
        framework="pytorch_optimizer",
        profile="torch",
        implementations=implementations,
        devices=("cpu", "cuda"),
        dtypes=TORCH_DTYPES,
        knobs=knobs,
        features=features,
        notes=notes,
    )


class StableAdamWAdapter(_PytorchOptimizerAdapter):
    """``pytorch_optimizer.StableAdamW``: AdamW with RMS update clipping (not a spec knob)."""

    CLASS = "StableAdamW"
    RUN = StableAdamWRun
    IMPLEMENTATIONS: ClassVar[dict[str, dict[str, Any]]] = {
        "forloop": {"foreach": False},
        "foreach": {"foreach": True},
    }
    INFO = _info(
        "po-stableadamw",
        {**_COMMON_KNOBS, "decay_form": {**_COMMON_KNOBS["decay_form"], "coupled_l2": N}},
        _COMMON_FEATURES,
        ("forloop", "foreach"),
        "EXTRA MECHANISM: lr_t of each tensor is divided by max(1, RMS(g/sqrt(max(v_hat,eps^2)))) "
        "for update and decay (update clipping); no config expresses it. Debiased betas "
        "(equal to bias correction); per-group step; beta2 default 0.99; kahan_sum for 16-bit.",
    )

    def _kwargs(self, config: AdamWConfig) -> dict[str, Any]:
        coupled = config.decay_form.value == "coupled_l2"
        return {**super()._kwargs(config), "weight_decouple": not coupled}


class AdamCAdapter(_PytorchOptimizerAdapter):
    """``pytorch_optimizer.AdamC``: epsilon before bias correction, eps_root fixed at 1e-15."""

    CLASS = "AdamC"
    FIXED_EPS_ROOT = 1e-15
    IMPLEMENTATIONS: ClassVar[dict[str, dict[str, Any]]] = {
        "forloop": {"foreach": False},
        "foreach": {"foreach": True},
    }
    INFO = _info(
        "po-adamc",
        {
            **_COMMON_KNOBS,
            "eps_placement": {"after_bias_correction": U, "before_bias_correction": N},
            "decay_scaling": {"lr": N, "schedule_multiplier": U, "unscaled": N},
            "decay_form": {**_COMMON_KNOBS["decay_form"], "coupled_l2": N},
            "amsgrad_mode": {"raw_v": N, "bias_corrected_v": U},
        },
        {**_COMMON_FEATURES, "amsgrad": N},
        ("forloop", "foreach"),
        "denominator (sqrt(v + 1e-15) + eps)/sqrt(1 - beta2^t): eps before bias correction and "
        "eps_root fixed at 1e-15; per-group step; ams_bound = AMSGrad(raw v); fixed_decay = "
        "unscaled decay; 'normalized' groups (decay lr^2/max_lr) not used.",
    )

    def _default_knobs(self, sig: Mapping[str, inspect.Parameter]) -> dict[str, Any]:
        return {
            **super()._default_knobs(sig),
            "eps_placement": "before_bias_correction",
            "amsgrad": bool(sig["ams_bound"].default),
            "decay_scaling": "unscaled" if sig["fixed_decay"].default else "lr",
        }

    def _kwargs(self, config: AdamWConfig) -> dict[str, Any]:
        return {
            **super()._kwargs(config),
            "ams_bound": config.amsgrad,
            "weight_decouple": config.decay_form.value != "coupled_l2",
            "fixed_decay": config.decay_scaling.value == "unscaled",
        }


class FlashAdamWAdapter(_PytorchOptimizerAdapter):
    """``pytorch_optimizer.FlashAdamW``: torch's formula, per-group step, 8-bit moments."""

    CLASS = "FlashAdamW"
    RUN = FlashAdamWRun
    IMPLEMENTATIONS: ClassVar[dict[str, dict[str, Any]]] = {
        "quantized": {"quantize": True, "foreach": False},
        "forloop": {"quantize": False, "foreach": False},
        "foreach": {"quantize": False, "foreach": True},
    }
    INFO = _info(
        "po-flashadamw",
        {**_COMMON_KNOBS, "decay_scaling": {"lr": N, "schedule_multiplier": N, "unscaled": U}},
        _COMMON_FEATURES,
        ("quantized", "forloop", "foreach"),
        "EXTRA MECHANISM (implementation 'quantized', the package default): moments stored as "
        "grouped 8-bit codes with fp16 scales. 'forloop'/'foreach': quantize=False (foreach "
        "batches float32 parameters only). decouple_lr=True gives schedule_multiplier scaling. "
        "Per-group step.",
    )

    def _kwargs(self, config: AdamWConfig) -> dict[str, Any]:
        sm = decay_active(config) and config.decay_scaling.value == "schedule_multiplier"
        return {**super()._kwargs(config), "decouple_lr": sm}


ADAPTERS: dict[str, type[_PytorchOptimizerAdapter]] = {
    "po-stableadamw": StableAdamWAdapter,
    "po-adamc": AdamCAdapter,
    "po-flashadamw": FlashAdamWAdapter,
}
