r"""PyTorch adapters: ``torch.optim.AdamW`` and ``torch.optim.Adam(decoupled_weight_decay=True)``.

The math (``torch/optim/adam.py``, torch 2.13.0), for a parameter with its own count :math:`k`:

.. math::

   \theta \leftarrow \theta(1-\alpha_t\lambda);\quad m \leftarrow \mathrm{lerp}(m, g, 1-\beta_1);
   \quad v \leftarrow \beta_2 v + (1-\beta_2) g^2 \\
   \theta \leftarrow \theta - \frac{\alpha_t}{1-\beta_1^k}\,
   \frac{m}{\sqrt{v}/\sqrt{1-\beta_2^k}+\epsilon}

i.e. the ``torch`` profile: epsilon after bias correction, multiplicative decay scaled by the
scheduled lr before the step, per-parameter step counts, AMSGrad on the raw :math:`v`.
Implementations: ``forloop`` (``foreach=False``), ``foreach`` (``foreach=True``), ``fused``
(``fused=True``); ``None`` leaves the choice to torch. With a *tensor* lr (each group's ``lr`` a
0-dim float64 tensor holding the config's lr exactly -- float32 for ``fused`` on CUDA, whose
kernel requires it, so lr is rounded to binary32 there -- torch 2.13's rules in ``adam.py``: foreach
only with ``capturable=True``): ``forloop-tensor-lr``, ``fused-tensor-lr``, and on CUDA only
``capturable`` (``foreach=True, capturable=True``) and ``forloop-capturable``. The capturable
path keeps the step count as a float32 tensor and computes the bias corrections and
``step_size = lr/bc1`` as float32 tensors, then
``denom = (sqrt(v)/(sqrt(bc2)*(-step_size))) + eps/(-step_size)``, ``theta += m/denom``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

from adamw_ref import AdamWConfig, Constant, StepCountScope
from adapters.errors import AdapterError, UnsupportedConfig
from adapters.protocol import AdapterInfo, Array, Support
from adapters.torch.common import TORCH_DTYPES, import_torch, refuse_unsupported
from adapters.torch.run import TorchRun

N, E, U = Support.NATIVE, Support.EMULATED, Support.UNSUPPORTED

#: implementation name -> constructor flags
IMPLEMENTATIONS: dict[str, dict[str, bool]] = {
    "forloop": {"foreach": False, "fused": False},
    "foreach": {"foreach": True, "fused": False},
    "fused": {"foreach": False, "fused": True},
    "forloop-tensor-lr": {"foreach": False, "fused": False},
    "fused-tensor-lr": {"foreach": False, "fused": True},
    "capturable": {"foreach": True, "fused": False, "capturable": True},
    "forloop-capturable": {"foreach": False, "fused": False, "capturable": True},
}
#: implementations whose groups get a tensor lr (0-dim float64 on the parameters' device)
TENSOR_LR: frozenset[str] = frozenset(
    {"forloop-tensor-lr", "fused-tensor-lr", "capturable", "forloop-capturable"}
)
#: torch requires params and state steps on cuda/xpu/hpu/xla for capturable=True
CUDA_ONLY: frozenset[str] = frozenset({"capturable", "forloop-capturable"})

TORCH_KNOBS: dict[str, dict[str, Support]] = {
    "eps_placement": {"after_bias_correction": N, "before_bias_correction": U},
    "decay_scaling": {"lr": N, "schedule_multiplier": U, "unscaled": U},
    "decay_form": {"multiplicative": N, "none": N, "proximal": U, "added_to_update": U, "coupled_l2": U},
    "decay_timing": {"before_step": N, "after_step": U},
    "bias_correction": {"true": N, "false": U},
    "amsgrad_mode": {"raw_v": N, "bias_corrected_v": U},
    "schedule_count": {"pre_increment": N, "post_increment": E},
    "step_count_scope": {"per_parameter": N, "global": U},
    "bias_correction_offset": {"0": N},
}

TORCH_FEATURES: dict[str, Support] = {
    "amsgrad": N,
    "maximize": N,
    "nesterov": U,
    "eps_root": U,
    "lr_schedule": N,
    "wd_schedule": U,
    "groups": N,
    "frozen": N,
    "save_load": N,
}

_NOTES = (
    "lr_schedule via LambdaLR stepped after optimizer.step() (post_increment is emulated by "
    "shifting the lambda by one); wd_schedule: only Constant (folded into weight_decay). "
    "All four dtypes run on cpu and cuda with every implementation (torch 2.13: fused CPU "
    "kernels exist for float32/float64/float16/bfloat16). float16/bfloat16: forloop and foreach "
    "round every intermediate to the parameter dtype, fused computes in float32 and rounds "
    "once. Tensor lr: the *-tensor-lr and capturable implementations (float64 0-dim tensors, "
    "float32 for fused on CUDA, whose kernel requires it; "
    "the LambdaLR schedule writes lr*eta into them in place); capturable is CUDA-only and "
    "computes the bias corrections in float32 whatever the parameter dtype. "
    "Save/load: state_dict tensors in .npz, the rest JSON."
)


class _TorchAdamBase:
    """Shared factory for both torch classes; subclasses set ``_cls_name`` and ``INFO``.

    ``info`` is set per instance, so the class itself is not an ``Adapter`` and
    :func:`adapters.load_adapter` instantiates it.
    """

    INFO: AdapterInfo
    _cls_name = "AdamW"
    _extra: ClassVar[dict[str, Any]] = {}

    def __init__(self) -> None:
        self.info: AdapterInfo = self.INFO

    def _cls(self) -> Any:
        return getattr(import_torch(self.info.name).optim, self._cls_name)

    def versions(self) -> dict[str, str]:
        return {"torch": str(import_torch(self.info.name).__version__)}

    def native_defaults(self) -> AdamWConfig:
        """The installed constructor's defaults (read by ``inspect.signature``) + torch knobs."""
        sig = inspect.signature(self._cls().__init__).parameters
        beta1, beta2 = sig["betas"].default
        return AdamWConfig(
            lr=float(sig["lr"].default),
            beta1=float(beta1),
            beta2=float(beta2),
            eps=float(sig["eps"].default),
            weight_decay=float(sig["weight_decay"].default),
            amsgrad=bool(sig["amsgrad"].default),
            maximize=bool(sig["maximize"].default),
            step_count_scope=StepCountScope.PER_PARAMETER,
        )

    def to_native(self, config: AdamWConfig, implementation: str | None = None) -> dict[str, Any]:
        """Constructor kwargs (group lr/weight_decay come from ``config.groups``)."""
        refuse_unsupported(self.info, config)
        if implementation is not None and implementation not in IMPLEMENTATIONS:
            raise AdapterError(
                f"{self.info.name}: implementation {implementation!r} unknown; expected one of "
                f"{list(IMPLEMENTATIONS)} or None (torch's choice)"
            )
        omega = config.wd_schedule(0) if isinstance(config.wd_schedule, Constant) else 1.0
        wd = 0.0 if config.decay_form.value == "none" else config.weight_decay * omega
        kwargs: dict[str, Any] = {
            "lr": config.lr,
            "betas": (config.beta1, config.beta2),
            "eps": config.eps,
            "weight_decay": wd,
            "amsgrad": config.amsgrad,
            "maximize": config.maximize,
        }
        kwargs.update(self._extra_for(config))
        if implementation is not None:
            kwargs.update(IMPLEMENTATIONS[implementation])
        if implementation in TENSOR_LR:
            kwargs["tensor_lr"] = True  # adapter flag (popped by create): lr as a float64 tensor
        return kwargs

    def _extra_for(self, config: AdamWConfig) -> dict[str, Any]:
        return dict(self._extra)

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
        tensor_lr = bool(kwargs.pop("tensor_lr", False))
        if implementation in CUDA_ONLY and not device.startswith("cuda"):
            raise UnsupportedConfig(
                self.info.name,
                "implementation",
                implementation,
                f"capturable=True needs a CUDA device (torch rejects device {device!r})",
            )
        cls = self._cls()
        if config.decay_form.value == "none":
            config = config.replace(
                groups=tuple(g.__class__(g.names, g.lr, 0.0) for g in config.groups), weight_decay=0.0
            )

        def make(groups: list[dict[str, Any]]) -> Any:
            if tensor_lr:
                import torch

                dev = groups[0]["params"][0].device
                # the fused CUDA kernel reads lr as float ("expected scalar type Float")
                dt = torch.float32 if kwargs.get("fused") and dev.type == "cuda" else torch.float64
                groups = [{**g, "lr": torch.tensor(g["lr"], dtype=dt, device=dev)} for g in groups]
            return cls(groups, **kwargs)

        return TorchRun(self.info.name, make, config, params, device=device, dtype=dtype)


class TorchAdamW(_TorchAdamBase):
    """``torch.optim.AdamW``."""

    INFO = AdapterInfo(
        name="torch",
        framework="torch",
        profile="torch",
        implementations=tuple(IMPLEMENTATIONS),
        devices=("cpu", "cuda"),
        dtypes=TORCH_DTYPES,
        knobs=TORCH_KNOBS,
        features=TORCH_FEATURES,
        notes=_NOTES,
        implementation_devices=dict.fromkeys(CUDA_ONLY, ("cuda",)),
    )


class TorchAdamDecoupled(_TorchAdamBase):
    """``torch.optim.Adam(decoupled_weight_decay=True)``: the same kernels as AdamW.

    ``decay_form=coupled_l2`` is also native here (``decoupled_weight_decay=False``: plain
    Adam + L2, the ``adam_l2`` profile). ``Adam``'s default ``weight_decay`` is 0.
    """

    _cls_name = "Adam"
    _extra: ClassVar[dict[str, Any]] = {"decoupled_weight_decay": True}
    INFO = AdapterInfo(
        name="torch-adam",
        framework="torch",
        profile="torch",
        implementations=tuple(IMPLEMENTATIONS),
        devices=("cpu", "cuda"),
        dtypes=TORCH_DTYPES,
        knobs={**TORCH_KNOBS, "decay_form": {**TORCH_KNOBS["decay_form"], "coupled_l2": N}},
        features=TORCH_FEATURES,
        notes=_NOTES + " Adam's default weight_decay is 0 (native_defaults has weight_decay=0).",
        implementation_devices=dict.fromkeys(CUDA_ONLY, ("cuda",)),
    )

    def _extra_for(self, config: AdamWConfig) -> dict[str, Any]:
        return {"decoupled_weight_decay": config.decay_form.value != "coupled_l2"}
