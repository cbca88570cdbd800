"""What every generic wrapper shares: the factory half of the protocol, and the state probe.

:class:`GenericAdapter` implements ``info``, ``versions``, ``native_defaults`` and ``to_native``
from a :class:`~adapters.generic.capabilities.Capabilities`; each kind adds ``create``.

**The state probe.** Teacher forcing writes the reference's :math:`(k, m, v, v^{max})` into the
optimizer, and ``state()`` reads them back, so a wrapper must know where the optimizer keeps
them *and* that they mean what the spec means (raw moments, not bias-corrected, not quantised).
Names alone do not say that (pytorch_optimizer's StableAdamW keeps :math:`\\hat m, \\hat v` under
torch's names). So the wrapper runs a probe once per run: a fresh optimizer of the same
configuration on one parameter ``[0, 0]``, one step with the gradient ``[1, 1]`` (torch: one
probe parameter of every shape the run has, since libraries such as torchao and bitsandbytes
quantise only large tensors). Whatever the
optimizer, the spec's state after that step is :math:`k=1`, :math:`m=\\pm(1-\\beta_1)`,
:math:`v=1-\\beta_2` (and :math:`v^{max}=v`); :func:`check_first_step` compares what was found
with that. A layout that is missing or does not match makes ``state()`` and ``set_state()``
raise :class:`~adapters.errors.UnsupportedConfig` with the reason, which the suite reports as a
skipped teacher-forced case.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from typing import Any

import numpy as np

from adamw_ref import AdamWConfig
from adapters.capabilities import knob_table
from adapters.errors import AdapterError, UnsupportedConfig
from adapters.generic.capabilities import Capabilities
from adapters.generic.spec import AdapterSpec
from adapters.protocol import AdapterInfo

PROBE = "probe"  #: the probe's parameter name
PROBE_SHAPE = (2,)


def distribution_version(module: str) -> tuple[str, str]:
    """``(distribution name, version)`` of the installed package providing ``module``."""
    top = module.split(".")[0]
    try:
        dists = importlib.metadata.packages_distributions().get(top, [])
    except Exception:  # a broken metadata entry elsewhere must not break a run
        dists = []
    for dist in dists:
        try:
            return dist, importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return top, "not installed (a local module)"


def check_first_step(
    m: Any, v: Any, vmax: Any, step: int | None, config: AdamWConfig, dtype: str, size: int = 2
) -> str | None:
    """None if the probe's state is the spec's after one step of ``g = 1`` from ``theta = 0``
    (``size`` elements), else the reason it is not (see the module docstring)."""
    if step != 1:
        return f"the step count after one step reads {step!r}, not 1"
    sign = -1.0 if config.maximize else 1.0
    tol = 2.0**-6 if dtype in ("float16", "bfloat16") else 1e-4
    for what, got, want in (
        ("m (first moment)", m, sign * (1.0 - config.beta1)),
        ("v (second moment)", v, 1.0 - config.beta2),
        ("v_max", vmax, 1.0 - config.beta2),
    ):
        if got is None:
            if what == "v_max" and not config.amsgrad:
                continue
            return f"no {what} found"
        arr = np.asarray(got, dtype=np.float64).reshape(-1)
        if arr.size != size or not np.all(np.abs(arr - want) <= tol * abs(want)):
            shown = arr.tolist() if arr.size <= 4 else f"{arr[:4].tolist()}... ({arr.size} values)"
            return (
                f"after one step with g=1 the {what} reads {shown}, not {want!r} "
                "(the stored state is not the spec's raw moment)"
            )
    return None


class GenericAdapter:
    """The factory half of a generic wrapper (an :class:`~adapters.protocol.Adapter`).

    Subclasses pass the kind's ``framework`` name, ``implementations`` (with the constructor
    flags each adds: ``impl_kwargs``), ``devices`` and ``dtypes``, and implement ``create``.
    """

    framework = ""

    def __init__(
        self,
        spec: AdapterSpec,
        target: Any,
        caps: Capabilities,
        *,
        implementations: Mapping[str, Mapping[str, Any]],
        devices: tuple[str, ...],
        dtypes: tuple[str, ...],
        notes: str = "",
    ) -> None:
        self.spec = spec
        self.target = target
        self.caps = caps
        self.impl_kwargs = {k: dict(v) for k, v in implementations.items()}
        shown = {("beta1, beta2" if a == "betas" else f): a for f, a in caps.signature.names.items()}
        mapping = ", ".join(f"{f}->{a}" for f, a in shown.items())
        text = [f"generic {spec.kind} wrapper of {caps.signature.target}; mapped: {mapping or 'nothing'}"]
        if spec.kwargs:
            text.append(f"constructor overrides: {dict(spec.kwargs)}")
        text.extend(caps.notes)
        if notes:
            text.append(notes)
        self.info = AdapterInfo(
            name=spec.spec,
            framework=f"{self.framework} (generic: {spec.module.split('.')[0]})",
            profile=caps.profile,
            implementations=tuple(implementations),
            devices=devices,
            dtypes=dtypes,
            knobs=knob_table(caps.profile_config),
            features=caps.features,
            notes="; ".join(text),
        )

    # -- the protocol -------------------------------------------------------------------------
    def framework_versions(self) -> dict[str, str]:
        """The framework's packages (overridden per kind)."""
        return {}

    def versions(self) -> dict[str, str]:
        out = self.framework_versions()
        dist, ver = distribution_version(self.spec.module)
        out.setdefault(dist, ver)
        return out

    def native_defaults(self) -> AdamWConfig:
        return self.caps.native_defaults()

    def check_implementation(self, implementation: str | None) -> None:
        if implementation is not None and implementation not in self.impl_kwargs:
            raise UnsupportedConfig(
                self.info.name,
                "implementation",
                implementation,
                f"expected one of {list(self.impl_kwargs)} or None (the optimizer's own choice)",
            )

    def to_native(self, config: AdamWConfig, implementation: str | None = None) -> dict[str, Any]:
        """The constructor's keyword arguments for ``config`` (schedules: the base values)."""
        self.check_implementation(implementation)
        self.caps.check(config)
        kwargs = self.caps.kwargs(config)
        kwargs.update(self.impl_kwargs.get(implementation or "", {}))
        return kwargs

    def check_dtype_device(self, dtype: str, device: str) -> None:
        if dtype not in self.info.dtypes:
            raise UnsupportedConfig(
                self.info.name, "dtype", dtype, f"expected one of {list(self.info.dtypes)}"
            )
        if device.split(":")[0] not in self.info.devices and device not in ("gpu",):
            raise AdapterError(
                f"{self.info.name}: device {device!r} unknown; expected one of {self.info.devices}"
            )


def probe_refusal(adapter: str, what: str, reason: str) -> UnsupportedConfig:
    """The refusal of ``state()`` (``what="state"``) or ``set_state()`` (``"teacher_forced"``)."""
    value = "set_state" if what == "teacher_forced" else "state()"
    return UnsupportedConfig(adapter, what, value, f"the optimizer's state cannot be mapped: {reason}")


class ProbeGate:
    """State read-back and teacher forcing behind the probe: :meth:`layout` runs ``_probe()``
    once and refuses ``state()`` / ``set_state()`` (``what``) with its reason, if it gave one.
    Subclasses implement ``_probe`` (None: the state is the spec's raw moments) and
    ``probe_label`` (the adapter's name in the refusal)."""

    _verdict: tuple[str | None] | None = None

    def _probe(self) -> str | None:
        raise NotImplementedError

    def probe_label(self) -> str:
        raise NotImplementedError

    def layout(self, what: str) -> None:
        if self._verdict is None:
            self._verdict = (self._probe(),)
        reason = self._verdict[0]
        if reason is not None:
            raise probe_refusal(self.probe_label(), what, reason)
