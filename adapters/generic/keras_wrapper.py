r"""``keras-<backend>:pkg.mod.Class``: any ``keras.optimizers.Optimizer`` on one Keras backend.

Keras fixes its backend per process: the spec's backend (``keras-jax``, ``keras-tensorflow``,
``keras-torch``) must be the process's (``KERAS_BACKEND``; the wrapper sets it when Keras is not
imported yet and refuses, with FrameworkUnavailable, a process that loaded another).
``keras:pkg.mod.Class`` means every installed backend (:func:`adapters.registry.expand_spec`).

The live optimizer is a :class:`~adapters.keras.run.KerasRun` (named ``keras.Variable``
parameters, decay masks through ``exclude_from_weight_decay``, a ``LearningRateSchedule`` of
``table[count] = fl(fl(lr) * fl(eta(count)))`` at Keras' own ``iterations`` count, float64
``floatx`` while building for float64 runs, save/load of ``optimizer.variables``). Discovered:

* **groups**: decay masks only (a group's weight decay 0), where the constructor takes
  ``weight_decay``; per-group learning rates are refused. ``wd_schedule``: only constant.
* **maximize**: emulated (the gradient is negated) unless the constructor takes ``maximize``.
* **state read-back / teacher forcing**: where the optimizer keeps ``_momentums`` and
  ``_velocities`` (and ``_velocity_hats`` with AMSGrad) holding the spec's moments (the probe of
  :mod:`adapters.generic.base`), with no other variable than ``iterations`` and the learning rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from adamw_ref import AdamWConfig, Constant, ScheduleCount
from adapters.errors import AdapterError
from adapters.generic.base import PROBE, PROBE_SHAPE, GenericAdapter, ProbeGate, check_first_step
from adapters.generic.capabilities import Capabilities, feature_table, fold_constant_lr, read_signature
from adapters.generic.spec import AdapterSpec
from adapters.keras.backend import import_keras, keras_version
from adapters.keras.run import KerasRun
from adapters.protocol import Array, CanonicalState, Support

N, E, U = Support.NATIVE, Support.EMULATED, Support.UNSUPPORTED


class GenericKerasRun(ProbeGate, KerasRun):
    """A :class:`KerasRun` over any Keras optimizer class."""

    def __init__(
        self, wrapper: KerasWrapper, config: AdamWConfig, params: Mapping[str, Array], device: str, dtype: str
    ) -> None:
        self.wrapper = wrapper
        self.spec_config = config = fold_constant_lr(config)
        self.kwargs = wrapper.caps.kwargs(config)
        lr: Any = config.lr
        if not isinstance(config.lr_schedule, Constant):
            lr = {"LearningRateSchedule": "lr * eta(count)"}
        run_cfg = config.replace(
            schedule_count=ScheduleCount.PRE_INCREMENT,  # Keras' own count
            maximize=config.maximize and not wrapper.caps.native_maximize(),  # KerasRun negates
        )
        super().__init__(
            wrapper.info.name, wrapper.backend, run_cfg, {"learning_rate": lr}, params, device, dtype
        )

    def build_optimizer(self, keras: Any, learning_rate: Any, native: Mapping[str, Any]) -> Any:
        kwargs = dict(self.kwargs)
        lr_arg = self.wrapper.caps.signature.names.get("lr")
        if lr_arg is not None:
            kwargs[lr_arg] = learning_rate
        try:
            return self.wrapper.target(**kwargs)
        except Exception as exc:
            raise AdapterError(
                f"{self.wrapper.info.name}: the constructor rejected {sorted(kwargs)}: "
                f"{type(exc).__name__}: {exc}"
            ) from None

    # -- state --------------------------------------------------------------------------------
    def probe_label(self) -> str:
        return str(self.wrapper.info.name)

    def _probe(self) -> str | None:
        try:
            probe = GenericKerasRun(
                self.wrapper,
                self.spec_config.replace(groups=()),
                {PROBE: np.zeros(PROBE_SHAPE)},
                "cpu",
                self.dtype,
            )
            probe.step({PROBE: np.ones(PROBE_SHAPE)})
        except Exception as exc:
            return f"the probe step failed: {type(exc).__name__}: {exc}"
        opt = probe.opt
        slots = ["_momentums", "_velocities"] + (["_velocity_hats"] if probe.amsgrad() else [])
        missing = [s for s in slots if not isinstance(getattr(opt, s, None), list)]
        if missing:
            return f"no {missing} variable lists on {type(opt).__name__}"
        known = {id(opt.iterations), id(getattr(opt, "_learning_rate", None))}
        known |= {id(x) for s in slots for x in getattr(opt, s)}
        extra = [str(getattr(x, "path", x.name)) for x in opt.variables if id(x) not in known]
        if extra:
            return f"optimizer variables {extra} have no counterpart in the spec's (k, m, v, v_max)"
        var = probe.vars[0]
        vmax = probe._np(probe._slot("_velocity_hats", var)) if probe.amsgrad() else None
        return check_first_step(
            probe._np(probe._slot("_momentums", var)),
            probe._np(probe._slot("_velocities", var)),
            vmax,
            int(probe._np(opt.iterations)),
            self.spec_config,
            self.dtype,
        )

    def state(self) -> CanonicalState:
        self.layout("state")
        return super().state()

    def set_state(self, params: Mapping[str, Array], state: CanonicalState) -> None:
        self.layout("teacher_forced")
        super().set_state(params, state)


class KerasWrapper(GenericAdapter):
    """The adapter of ``keras-<backend>:pkg.mod.Class``."""

    framework = "keras"

    def __init__(self, spec: AdapterSpec, cls: Any) -> None:
        assert spec.backend is not None
        self.backend = spec.backend
        keras = import_keras(self.backend)
        if not (isinstance(cls, type) and issubclass(cls, keras.optimizers.Optimizer)):
            raise AdapterError(
                f"adapter spec {spec.spec!r}: {spec.module}.{spec.attr} is not a keras.optimizers.Optimizer "
                f"subclass (got {type(cls).__name__})"
            )
        sig = read_signature(cls, spec.spec, skip_first=False)
        caps = Capabilities(spec.spec, sig, spec.claimed_profile, dict(spec.kwargs))
        has_wd = "weight_decay" in sig.names
        caps.features = feature_table(
            caps,
            {
                "lr_schedule": N if "lr" in sig.names and "lr" not in caps.pinned else U,
                "wd_schedule": U,
                "groups": N if has_wd else U,
                "frozen": N,
                "save_load": N,
            },
        )
        caps.group_wd = "mask" if has_wd else False
        caps.notes.append("wd_schedule: keras takes weight_decay as a float (only a Constant schedule)")
        super().__init__(
            spec,
            cls,
            caps,
            implementations={"default": {}},
            devices=("cpu", "cuda"),
            dtypes=("float32", "float64", "bfloat16", "float16"),
            notes=f"keras backend {self.backend} (one per process); groups: decay masks only",
        )

    def framework_versions(self) -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        out = {"keras": keras_version()}
        pkg = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[self.backend]
        for cand in (pkg, f"{pkg}-cpu"):
            try:
                out[pkg] = version(cand)
                break
            except PackageNotFoundError:
                continue
        return out

    def create(
        self,
        config: AdamWConfig,
        params: Mapping[str, Array],
        *,
        implementation: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> GenericKerasRun:
        self.to_native(config, implementation)
        self.check_dtype_device(dtype, device)
        import_keras(self.backend, x64=(dtype == "float64"))
        return GenericKerasRun(self, config, params, device, dtype)
