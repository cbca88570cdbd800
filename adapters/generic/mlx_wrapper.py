r"""``mlx:pkg.mod.Class``: any ``mlx.optimizers.Optimizer`` (on the CPU).

The live optimizer is a :class:`~adapters.mlx.adapter.MLXRun` (named ``mx.array`` parameters,
one optimizer per ``(lr, weight_decay)`` group, a learning-rate callable
``table[step] = fl(fl(lr) * fl(eta(step)))`` at MLX's own ``step`` count, float64 on the CPU)
whose optimizers are built from the wrapped class with the mapped hyperparameters
(:mod:`adapters.generic.capabilities`). Discovered:

* **groups**: per-group learning rate and weight decay, where the constructor takes them
  (``learning_rate``/``lr``, ``weight_decay``/``wd``). ``wd_schedule``: only constant.
* **maximize**: emulated (the gradient is negated) unless the constructor takes ``maximize``.
* **state read-back / teacher forcing**: where ``optimizer.state`` holds, per parameter, exactly
  ``m`` and ``v`` (the spec's raw moments after a probe step) beside ``step`` and
  ``learning_rate``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from adamw_ref import AdamWConfig, Constant, DecayForm
from adapters.errors import AdapterError, FrameworkUnavailable, UnsupportedConfig
from adapters.generic.base import PROBE, PROBE_SHAPE, GenericAdapter, ProbeGate, check_first_step
from adapters.generic.capabilities import Capabilities, feature_table, read_signature
from adapters.generic.spec import AdapterSpec
from adapters.mlx.adapter import MLXRun, _import
from adapters.protocol import Array, CanonicalState, Support

N, E, U = Support.NATIVE, Support.EMULATED, Support.UNSUPPORTED
DTYPES = ("float32", "float64", "bfloat16", "float16")


class GenericMLXRun(ProbeGate, MLXRun):
    """An :class:`MLXRun` whose optimizers are the wrapped class."""

    def __init__(
        self, wrapper: MLXWrapper, config: AdamWConfig, params: Mapping[str, Array], dtype: str
    ) -> None:
        self.wrapper = wrapper
        self.spec_config = config
        native = {"betas": [config.beta1, config.beta2], "eps": config.eps, "bias_correction": True}
        run_cfg = config.replace(maximize=config.maximize and not wrapper.caps.native_maximize())
        super().__init__(run_cfg, native, params, dtype)

    def build(self, optim: Any, **kwargs: Any) -> Any:
        caps = self.wrapper.caps
        args = caps.kwargs(self.spec_config, lr=kwargs["learning_rate"], weight_decay=kwargs["weight_decay"])
        try:
            return self.wrapper.target(**args)
        except Exception as exc:
            raise AdapterError(
                f"{self.wrapper.info.name}: the constructor rejected {sorted(args)}: "
                f"{type(exc).__name__}: {exc}"
            ) from None

    # -- state --------------------------------------------------------------------------------
    def probe_label(self) -> str:
        return str(self.wrapper.info.name)

    def _probe(self) -> str | None:
        try:
            probe = GenericMLXRun(
                self.wrapper, self.spec_config.replace(groups=()), {PROBE: np.zeros(PROBE_SHAPE)}, self.dtype
            )
            probe.step({PROBE: np.ones(PROBE_SHAPE)})
        except Exception as exc:
            return f"the probe step failed: {type(exc).__name__}: {exc}"
        opt = probe.opts[0][0]
        slot = opt.state.get(PROBE)
        if not isinstance(slot, dict) or set(slot) != {"m", "v"}:
            found = sorted(slot) if isinstance(slot, dict) else type(slot).__name__
            return f"the per-parameter state holds {found}, not exactly the spec's m and v"
        extra = sorted(k for k in opt.state if k not in (PROBE, "step", "learning_rate"))
        if extra:
            return f"optimizer state {extra} has no counterpart in the spec's (k, m, v)"
        step = int(opt.state["step"].item()) if "step" in opt.state else None
        return check_first_step(
            probe._np(slot["m"]), probe._np(slot["v"]), None, step, self.spec_config, self.dtype
        )

    def state(self) -> CanonicalState:
        self.layout("state")
        return super().state()

    def set_state(self, params: Mapping[str, Array], state: CanonicalState) -> None:
        self.layout("teacher_forced")
        super().set_state(params, state)


class MLXWrapper(GenericAdapter):
    """The adapter of ``mlx:pkg.mod.Class``."""

    framework = "mlx"

    def __init__(self, spec: AdapterSpec, cls: Any) -> None:
        optim = _import()[1]
        if not (isinstance(cls, type) and issubclass(cls, optim.Optimizer)):
            raise AdapterError(
                f"adapter spec {spec.spec!r}: {spec.module}.{spec.attr} is not an mlx.optimizers.Optimizer "
                f"subclass (got {type(cls).__name__})"
            )
        sig = read_signature(cls, spec.spec, skip_first=False)
        caps = Capabilities(spec.spec, sig, spec.claimed_profile, dict(spec.kwargs))
        has_lr = "lr" in sig.names and "lr" not in caps.pinned
        has_wd = "weight_decay" in sig.names and "weight_decay" not in caps.pinned
        caps.features = feature_table(
            caps,
            {
                "lr_schedule": N if has_lr else U,
                "wd_schedule": U,
                "groups": N if has_lr or has_wd else U,
                "frozen": N,
                "save_load": U,
            },
        )
        caps.group_lr, caps.group_wd = has_lr, has_wd
        caps.notes.append("wd_schedule: the weight decay is a float (only a Constant schedule)")
        super().__init__(
            spec,
            cls,
            caps,
            implementations={"default": {}},
            devices=("cpu",),
            dtypes=DTYPES,
            notes="mlx on the CPU; one optimizer per (lr, weight_decay) group",
        )

    def framework_versions(self) -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return {"mlx": version("mlx")}
        except PackageNotFoundError:
            return {"mlx": "not installed"}

    def create(
        self,
        config: AdamWConfig,
        params: Mapping[str, Array],
        *,
        implementation: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> GenericMLXRun:
        self.to_native(config, implementation)
        self.check_dtype_device(dtype, device)
        if device != "cpu":
            raise FrameworkUnavailable(self.info.name, f"device={device!r}: the mlx: wrapper runs on cpu")
        if config.decay_form is DecayForm.NONE and config.weight_decay:
            raise UnsupportedConfig(self.info.name, "decay_form", "none", "set weight_decay=0 instead")
        if not isinstance(config.wd_schedule, Constant):
            raise UnsupportedConfig(self.info.name, "wd_schedule", config.wd_schedule, "only a constant")
        return GenericMLXRun(self, config, params, dtype)
