"""The reference itself as an adapter, and reference adapters with *planted bugs*.

:class:`ReferenceAdapter` runs :func:`adamw_ref.step` through the adapter protocol, computing in
the requested dtype (every operation rounded to it; binary64 for ``float64``). Its
``config_override`` replaces knob (or hyperparameter) values *after* the suite hands it a
config, while ``info.profile`` still claims the honest profile: an implementation with a planted
bug, used to test that the conformance suite flags and names it::

    bad = planted_adapter(knob="eps_placement", value="before_bias_correction")
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

import adamw_ref
from adamw_ref import KNOB_FIELDS, AdamWConfig, get_profile
from adapters.errors import AdapterError
from adapters.protocol import AdapterInfo, CanonicalState, Support
from adapters.reference.oracle import RefStepper, arithmetic, round_to

_N, _E = Support.NATIVE, Support.EMULATED


def _all_knobs() -> dict[str, dict[str, Support]]:
    from adamw_ref import knobs as K

    enums: dict[str, Any] = {
        "eps_placement": K.EpsPlacement,
        "decay_scaling": K.DecayScaling,
        "decay_form": K.DecayForm,
        "decay_timing": K.DecayTiming,
        "amsgrad_mode": K.AmsgradMode,
        "schedule_count": K.ScheduleCount,
        "step_count_scope": K.StepCountScope,
    }
    out: dict[str, dict[str, Support]] = {k: {m.value: _N for m in e} for k, e in enums.items()}
    out["bias_correction"] = {"true": _N, "false": _N}
    out["bias_correction_offset"] = {str(i): _N for i in range(4)}
    return out


FEATURES = (
    "amsgrad",
    "maximize",
    "nesterov",
    "eps_root",
    "lr_schedule",
    "wd_schedule",
    "groups",
    "frozen",
    "save_load",
)


class ReferenceRun:
    """One live reference optimizer (numpy arrays in and out, float64)."""

    def __init__(self, config: AdamWConfig, params: Mapping[str, Any], dtype: str) -> None:
        self._dtype = dtype
        self._round = round_to
        p0 = {k: round_to(v, dtype) for k, v in params.items()}
        self._ref = RefStepper(config, p0, arithmetic(dtype))

    def step(self, grads: Mapping[str, Any]) -> None:
        g = {k: None if v is None else self._round(v, self._dtype) for k, v in grads.items()}
        self._ref.step(g)

    def params(self) -> dict[str, Any]:
        return self._ref.params()

    def state(self) -> CanonicalState:
        m, v, vm = self._ref.moments()
        return CanonicalState(
            step=self._ref.state.step, m=m, v=v, v_max=vm, param_steps=dict(self._ref.state.param_steps)
        )

    def save(self, path: Path) -> None:
        data = {
            "params": {k: [float(x).hex() for x in np.ravel(a)] for k, a in self.params().items()},
            "state": adamw_ref.state_to_json(self._ref.state),
        }
        Path(path).write_text(json.dumps(data))

    def load(self, path: Path) -> None:
        data = json.loads(Path(path).read_text())
        st = adamw_ref.state_from_json(data["state"])
        A = self._ref.arith
        self._ref.state = st
        self._ref.flat = {k: tuple(A.vec([float.fromhex(x) for x in v])) for k, v in data["params"].items()}

    def set_state(self, params: Mapping[str, Any], state: CanonicalState) -> None:
        r = self._round
        d = self._dtype
        self._ref.set_state(
            {k: r(v, d) for k, v in params.items()},
            state.step,
            {k: r(v, d) for k, v in state.m.items()},
            {k: r(v, d) for k, v in state.v.items()},
            None if state.v_max is None else {k: r(v, d) for k, v in state.v_max.items()},
            state.param_steps,
        )

    def close(self) -> None:
        pass


class ReferenceAdapter:
    """The reference through the protocol. ``config_override`` plants a bug (see module doc)."""

    #: It computes the state-precision fields (``m_dtype`` etc.) itself (adapters/validation.py).
    computes_state_precision = True

    def __init__(
        self,
        config_override: Mapping[str, Any] | None = None,
        *,
        name: str = "reference",
        profile: str = "torch",
    ) -> None:
        self.config_override = dict(config_override or {})
        AdamWConfig().replace(**self.config_override)  # validate early, naming the field
        self.info = AdapterInfo(
            name=name,
            framework="adamw_ref",
            profile=profile,
            implementations=("emulated",),
            devices=("cpu",),
            dtypes=("float64", "float32", "float16", "bfloat16"),
            knobs=_all_knobs(),
            features=dict.fromkeys(FEATURES, _N),
            notes="The specification itself, computing in the requested dtype.",
        )

    def versions(self) -> dict[str, str]:
        return {"adamw_ref": adamw_ref.__version__, "numpy": np.__version__}

    def native_defaults(self) -> AdamWConfig:
        return get_profile(self.info.profile).config

    def to_native(self, config: AdamWConfig, implementation: str | None = None) -> dict[str, Any]:
        return config.to_json()

    def create(
        self,
        config: AdamWConfig,
        params: Mapping[str, Any],
        *,
        implementation: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> ReferenceRun:
        if implementation not in (None, "emulated"):
            raise AdapterError(f"reference: unknown implementation {implementation!r}")
        if device != "cpu":
            raise AdapterError(f"reference: device {device!r} not supported (cpu only)")
        if dtype not in self.info.dtypes:
            raise AdapterError(f"reference: dtype {dtype!r} not in {self.info.dtypes}")
        cfg = config.replace(**self.config_override) if self.config_override else config
        return ReferenceRun(cfg, params, dtype)


def planted_adapter(knob: str, value: Any, profile: str = "torch") -> ReferenceAdapter:
    """A reference adapter claiming ``profile`` but computing with ``knob=value``."""
    if knob not in KNOB_FIELDS and knob not in {f for f in AdamWConfig().to_json()}:
        raise AdapterError(f"planted_adapter: unknown knob {knob!r}")
    return ReferenceAdapter({knob: value}, name=f"planted[{knob}={value}]", profile=profile)
