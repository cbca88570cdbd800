r"""Keras 3 ``keras.optimizers.AdamW`` on the TensorFlow, JAX and PyTorch backends.

Keras computes (``keras/src/optimizers/adam.py`` ``update_step`` and
``base_optimizer.py`` ``_apply_weight_decay``), with :math:`t` = ``iterations + 1``:

.. math::

   \theta \leftarrow \theta-\theta\lambda\alpha_t;\quad m \mathrel{+}= (g-m)(1-\beta_1);\quad
   v \mathrel{+}= (g^2-v)(1-\beta_2);\quad
   \theta \leftarrow \theta - m\,\frac{\alpha_t\sqrt{1-\beta_2^t}/(1-\beta_1^t)}{\sqrt v+\hat\epsilon}

i.e. the ``keras3`` profile: :math:`\hat\epsilon` (eps before bias correction), decay
multiplicative, before the step, scaled by the scheduled lr; one global count (``iterations``);
schedules see the count before the increment. The torch backend uses ``m = b1*m + (1-b1)*g``
and ``theta *= 1 - wd*lr`` instead (same algebra, other rounding). AMSGrad keeps the running max
of the raw ``v``.

The backend is fixed per process (``KERAS_BACKEND``): :class:`KerasTensorFlow`,
:class:`KerasJax` and :class:`KerasTorch` each refuse to run once Keras was imported with
another backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adamw_ref import AdamWConfig
from adamw_ref.knobs import (
    DecayForm,
)
from adamw_ref.schedules import Constant
from adapters.errors import UnsupportedConfig
from adapters.keras.backend import import_keras, keras_version
from adapters.keras.capabilities import check_config, info_for, keras_defaults
from adapters.protocol import AdapterInfo, Array, OptimizerRun


class _KerasAdamW:
    """Factory for one Keras backend (see the module docstring for the update rule)."""

    backend: str = ""
    info: AdapterInfo

    def versions(self) -> dict[str, str]:
        out = {"keras": keras_version()}
        from importlib.metadata import PackageNotFoundError, version

        pkg = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[self.backend]
        for cand in (pkg, f"{pkg}-cpu") if pkg == "tensorflow" else (pkg,):
            try:
                out[pkg] = version(cand)
                break
            except PackageNotFoundError:
                continue
        return out

    def native_defaults(self) -> AdamWConfig:
        """The installed ``keras.optimizers.AdamW`` defaults, read by introspection."""
        keras = import_keras(self.backend)
        return keras_defaults(keras.optimizers.AdamW)

    def to_native(self, config: AdamWConfig, implementation: str | None = None) -> dict[str, Any]:
        """``keras.optimizers.AdamW`` keyword arguments (a schedule is described, not built)."""
        self._check_impl(implementation)
        check_config(self.info.name, config)
        assert isinstance(config.wd_schedule, Constant)
        wd = 0.0 if config.decay_form is DecayForm.NONE else config.weight_decay
        wd *= config.wd_schedule.value
        lr: Any = config.lr
        if not isinstance(config.lr_schedule, Constant) or config.lr_schedule.value != 1.0:
            lr = {
                "LearningRateSchedule": "lr * eta(count)",
                "lr": config.lr,
                "schedule": config.lr_schedule,
                "count": config.schedule_count.value,
            }
        return {
            "learning_rate": lr,
            "weight_decay": wd,
            "beta_1": config.beta1,
            "beta_2": config.beta2,
            "epsilon": config.eps,
            "amsgrad": config.amsgrad,
        }

    def _check_impl(self, implementation: str | None) -> None:
        if implementation not in (None, "default"):
            raise UnsupportedConfig(
                self.info.name,
                "implementation",
                implementation,
                "keras AdamW has one implementation: 'default'",
            )

    def create(
        self,
        config: AdamWConfig,
        params: Mapping[str, Array],
        *,
        implementation: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> OptimizerRun:
        from adapters.keras.run import KerasRun

        native = self.to_native(config, implementation)
        if dtype not in self.info.dtypes:
            raise UnsupportedConfig(
                self.info.name, "dtype", dtype, f"expected one of {list(self.info.dtypes)}"
            )
        import_keras(self.backend, x64=(dtype == "float64"))
        return KerasRun(self.info.name, self.backend, config, native, params, device, dtype)


class KerasTensorFlow(_KerasAdamW):
    """``keras.optimizers.AdamW`` with ``KERAS_BACKEND=tensorflow``."""

    backend = "tensorflow"
    info = info_for("tensorflow")


class KerasJax(_KerasAdamW):
    """``keras.optimizers.AdamW`` with ``KERAS_BACKEND=jax``."""

    backend = "jax"
    info = info_for("jax")


class KerasTorch(_KerasAdamW):
    """``keras.optimizers.AdamW`` with ``KERAS_BACKEND=torch``."""

    backend = "torch"
    info = info_for("torch")
