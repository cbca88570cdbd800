r"""The adapter protocol.

An :class:`Adapter` (a factory; one per framework family) declares its capabilities as data in
``info`` (like PyTorch's ``OptimizerInfo``) and creates :class:`OptimizerRun` objects::

    adapter = load_adapter("torch")
    run = adapter.create(config, {"w": np.zeros(3)}, implementation="foreach",
                         device="cpu", dtype="float32")
    run.step({"w": grad})               # None freezes a parameter for that step
    run.params()                        # {"w": float64 ndarray}
    run.state()                         # CanonicalState(step, m, v, v_max), float64 ndarrays
    run.save(path); run.load(path)      # the framework's *native* state, no pickle where possible

``adapter.native_defaults()`` reads the framework's own constructor defaults (by introspection of
the installed package, not copied from a profile) and returns them as an
:class:`~adamw_ref.AdamWConfig`; ``adapter.to_native(config)`` returns the native constructor
arguments, raising :class:`~adapters.errors.UnsupportedConfig` for a knob it cannot express.
Gradients and parameters are numpy arrays of any shape (0-d and zero-size included); they are
cast to ``dtype`` on the way in and returned as float64.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from adamw_ref import AdamWConfig

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Array = NDArray[np.float64]
else:
    Array = Any


class Support(str, Enum):
    """How an adapter supports a knob value or feature."""

    NATIVE = "native"  # the framework's own code computes it
    EMULATED = "emulated"  # the adapter composes framework pieces (e.g. an optax chain)
    UNSUPPORTED = "unsupported"  # refused with UnsupportedConfig


@dataclass(frozen=True)
class AdapterInfo:
    """Capabilities as data.

    ``knobs`` maps each knob field of :data:`adamw_ref.KNOB_FIELDS` to ``{value: Support}``
    (values as their JSON strings; bools as ``"true"``/``"false"``; the offset as ``"0"``, ...);
    ``features`` maps ``amsgrad``, ``maximize``, ``nesterov``, ``eps_root``, ``lr_schedule``,
    ``wd_schedule``, ``groups``, ``frozen`` (None grads), ``save_load`` to a Support.
    ``profile`` is the named profile the native defaults should equal.
    ``implementation_devices`` narrows ``devices`` for an implementation that runs only on some
    (torch's ``capturable`` needs CUDA): the suite never plans an impossible combination.
    """

    name: str
    framework: str
    profile: str
    implementations: tuple[str, ...]
    devices: tuple[str, ...]
    dtypes: tuple[str, ...]
    knobs: Mapping[str, Mapping[str, Support]]
    features: Mapping[str, Support]
    notes: str = ""
    skips: Mapping[str, str] = field(default_factory=dict)
    implementation_devices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def runs_on(self, implementation: str, device: str) -> bool:
        """Whether ``implementation`` can run on ``device`` at all."""
        return device in self.implementation_devices.get(implementation, self.devices)


@dataclass
class CanonicalState:
    """The state read back from a framework: step count and float64 moments per parameter."""

    step: int
    m: dict[str, Array]
    v: dict[str, Array]
    v_max: dict[str, Array] | None
    param_steps: dict[str, int] | None = None  # per-parameter update counts, where kept


@runtime_checkable
class OptimizerRun(Protocol):
    """One live optimizer over a fixed set of named parameters."""

    def step(self, grads: Mapping[str, Array | None]) -> None: ...

    def params(self) -> dict[str, Array]: ...

    def state(self) -> CanonicalState: ...

    def save(self, path: Path) -> None: ...

    def load(self, path: Path) -> None: ...

    def set_state(self, params: Mapping[str, Array], state: CanonicalState) -> None:
        """Overwrite parameters and moments (teacher forcing); step count included."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Adapter(Protocol):
    """A factory for :class:`OptimizerRun` objects of one framework family."""

    info: AdapterInfo

    def versions(self) -> dict[str, str]:
        """Framework name -> version string of every package this adapter drives."""
        ...

    def native_defaults(self) -> AdamWConfig: ...

    def to_native(self, config: AdamWConfig, implementation: str | None = None) -> dict[str, Any]: ...

    def create(
        self,
        config: AdamWConfig,
        params: Mapping[str, Array],
        *,
        implementation: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> OptimizerRun: ...
