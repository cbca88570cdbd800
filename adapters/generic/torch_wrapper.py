r"""``torch:pkg.mod.Class``: any ``torch.optim.Optimizer`` subclass behind the adapter protocol.

The live optimizer is a :class:`~adapters.torch.run.TorchRun` (parameter groups from
``config.groups``, a ``LambdaLR`` for the lr schedule stepped after every ``optimizer.step()``,
frozen parameters as ``grad=None``, pickle-free save/load of ``state_dict()``). What the wrapper
discovers:

* **implementations**: ``forloop``/``foreach`` where the constructor takes ``foreach``, and
  ``fused`` where it takes ``fused`` and the class is torch's own (``torch.*``: a third-party
  ``fused`` flag often means a CUDA/Triton kernel); otherwise ``default`` (the optimizer's
  choice). A spec override of ``foreach``/``fused`` leaves only ``default``.
* **groups** and **lr_schedule**: native where the learning rate argument is called ``lr``
  (``LambdaLR`` writes ``group['lr']``) and the weight decay, if any, ``weight_decay``.
  ``wd_schedule``: only constant (folded into ``weight_decay``).
* **maximize**: the constructor's ``maximize``, else emulated (the gradient is negated).
* **state read-back / teacher forcing**: where the probe (:mod:`adapters.generic.base`) finds
  ``exp_avg``, ``exp_avg_sq`` (and ``max_exp_avg_sq`` with AMSGrad) holding the spec's raw
  moments and a step count either in ``state[p]['step']`` (per parameter, as torch) or in
  ``group['step']`` (per group, as pytorch_optimizer), and no other state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from adamw_ref import AdamWConfig, ScheduleCount
from adapters.errors import AdapterError
from adapters.generic.base import PROBE, PROBE_SHAPE, GenericAdapter, check_first_step, probe_refusal
from adapters.generic.capabilities import Capabilities, feature_table, fold_constant_lr, read_signature
from adapters.generic.spec import AdapterSpec
from adapters.protocol import Array, CanonicalState, Support
from adapters.torch.common import TORCH_DTYPES, decay_active, import_torch
from adapters.torch.run import OptimizerFactory, TorchRun

N, E, U = Support.NATIVE, Support.EMULATED, Support.UNSUPPORTED
KNOWN_STATE = frozenset({"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"})


@dataclass(frozen=True)
class Layout:
    """Where a torch optimizer keeps the canonical state (read off the probe)."""

    step_in_group: bool
    step_tensor: bool
    step_dtype: Any  # torch dtype of a tensor step
    step_on_param_device: bool
    m_dtype: Any
    v_dtype: Any
    vmax: bool


def _probe_layout(run: TorchRun, name: str, config: AdamWConfig, dtype: str) -> Layout | str:
    """The layout of probe parameter ``name`` after ``run``'s one probe step, or why it has none."""
    import torch

    p = run.tensors[name]
    st = dict(run.optimizer.state.get(p, {}))
    group = next(g for g in run.optimizer.param_groups if any(q is p for q in g["params"]))
    extra = sorted(str(k) for k, v in st.items() if k not in KNOWN_STATE and v is not None)
    if extra:
        return f"state keys {extra} have no counterpart in the spec's (k, m, v, v_max)"
    m, v, x = st.get("exp_avg"), st.get("exp_avg_sq"), st.get("max_exp_avg_sq")
    if not isinstance(m, torch.Tensor) or not isinstance(v, torch.Tensor):
        return f"no exp_avg / exp_avg_sq tensors in the state (keys: {sorted(map(str, st))})"
    for key, t in (("exp_avg", m), ("exp_avg_sq", v), ("max_exp_avg_sq", x)):
        if t is not None and type(t) is not torch.Tensor:
            return (
                f"{key} of a {tuple(p.shape)} parameter is a {type(t).__name__} (a quantised tensor "
                "subclass): the spec's moments cannot be written into it"
            )
    if "step" in st:
        raw, in_group = st["step"], False
    elif "step" in group:
        raw, in_group = group["step"], True
    else:
        return "no step count in state[p]['step'] or group['step']"
    step = int(raw.item()) if isinstance(raw, torch.Tensor) else int(raw)
    why = check_first_step(_np(m), _np(v), None if x is None else _np(x), step, config, dtype, p.numel())
    if why:
        return f"{why} ({tuple(p.shape)} parameter)"
    return Layout(
        step_in_group=in_group,
        step_tensor=isinstance(raw, torch.Tensor),
        step_dtype=raw.dtype if isinstance(raw, torch.Tensor) else type(raw),
        step_on_param_device=isinstance(raw, torch.Tensor) and raw.device.type != "cpu",
        m_dtype=m.dtype,
        v_dtype=v.dtype,
        vmax=x is not None,
    )


def _np(t: Any) -> np.ndarray[Any, Any]:
    import torch

    return np.asarray(t.detach().to("cpu", torch.float64).numpy())


class GenericTorchRun(TorchRun):
    """A :class:`TorchRun` over any torch optimizer; state access through the probed layout."""

    def __init__(
        self,
        adapter: str,
        make_optimizer: OptimizerFactory,
        config: AdamWConfig,
        params: Mapping[str, Array],
        *,
        device: str,
        dtype: str,
        negate: bool,
        spec_config: AdamWConfig,
    ) -> None:
        super().__init__(adapter, make_optimizer, config, params, device=device, dtype=dtype)
        self.make_optimizer = make_optimizer
        self.negate = negate
        self.spec_config = spec_config  # the config as given (the run's may be normalised)
        self._layout: Layout | str | None = None

    def step(self, grads: Mapping[str, Array | None]) -> None:
        if self.negate and isinstance(grads, Mapping):
            grads = {n: None if g is None else -np.asarray(g, dtype=np.float64) for n, g in grads.items()}
        super().step(grads)

    def layout(self, what: str) -> Layout:
        """The probed layout, or UnsupportedConfig naming ``what`` (``state``/``teacher_forced``)."""
        if self._layout is None:
            shapes = list(dict.fromkeys([PROBE_SHAPE, *(tuple(t.shape) for t in self.tensors.values())]))
            names = [f"{PROBE}{i}" for i in range(len(shapes))]
            probe = GenericTorchRun(
                self.adapter,
                self.make_optimizer,
                self.config.replace(groups=()),
                {n: np.zeros(s) for n, s in zip(names, shapes, strict=True)},
                device=str(self.device),
                dtype=self.dtype_name,
                negate=self.negate,
                spec_config=self.spec_config,
            )
            try:
                probe.step({n: np.ones(s) for n, s in zip(names, shapes, strict=True)})
                found = [_probe_layout(probe, n, self.spec_config, self.dtype_name) for n in names]
                why = [f for f in found if isinstance(f, str)]
                layouts = {f for f in found if isinstance(f, Layout)}
                if why:
                    self._layout = why[0]
                elif len(layouts) > 1:
                    self._layout = (
                        f"the state layout differs between parameter shapes: {sorted(map(str, layouts))}"
                    )
                else:
                    self._layout = layouts.pop()
            except Exception as exc:  # the optimizer's own failure: no layout
                self._layout = f"the probe step failed: {type(exc).__name__}: {exc}"
            finally:
                probe.close()
        if isinstance(self._layout, str):
            raise probe_refusal(self.adapter, what, self._layout)
        return self._layout

    def _group(self, p: Any) -> dict[str, Any]:
        out: dict[str, Any] = next(g for g in self.optimizer.param_groups if any(q is p for q in g["params"]))
        return out

    def read_slot(self, p: Any) -> tuple[int, Any, Any, Any]:
        lay = self.layout("state")
        st = self.optimizer.state.get(p, {})
        raw = self._group(p).get("step", 0) if lay.step_in_group else st.get("step", 0)
        k = int(raw.item()) if hasattr(raw, "item") else int(raw)
        if st.get("exp_avg") is None:
            return k, None, None, None
        return k, st["exp_avg"], st["exp_avg_sq"], st.get("max_exp_avg_sq")

    def write_slot(self, p: Any, k: int, m: Any, v: Any, vmax: Any) -> None:
        import torch

        lay = self.layout("teacher_forced")
        st = self.optimizer.state[p]
        if not lay.step_in_group:
            if lay.step_tensor:
                dev = p.device if lay.step_on_param_device else "cpu"
                st["step"] = torch.tensor(float(k), dtype=lay.step_dtype, device=dev)
            else:
                st["step"] = lay.step_dtype(k)
        st["exp_avg"], st["exp_avg_sq"] = m.to(lay.m_dtype), v.to(lay.v_dtype)
        if lay.vmax:
            st["max_exp_avg_sq"] = (vmax if vmax is not None else torch.zeros_like(v)).to(lay.v_dtype)

    def set_step_count(self, steps: int) -> None:
        lay = self.layout("teacher_forced")
        if lay.step_in_group:
            for g in self.optimizer.param_groups:
                if lay.step_tensor:
                    g["step"].fill_(steps)
                else:
                    g["step"] = lay.step_dtype(steps)

    def state(self) -> CanonicalState:
        self.layout("state")
        return super().state()

    def set_state(self, params: Mapping[str, Array], state: CanonicalState) -> None:
        self.layout("teacher_forced")
        super().set_state(params, state)


class TorchWrapper(GenericAdapter):
    """The adapter of ``torch:pkg.mod.Class``."""

    framework = "torch"

    def __init__(self, spec: AdapterSpec, cls: Any) -> None:
        torch = import_torch(spec.spec)
        if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
            raise AdapterError(
                f"adapter spec {spec.spec!r}: {spec.module}.{spec.attr} is not a torch.optim.Optimizer "
                f"subclass (got {type(cls).__name__})"
            )
        sig = read_signature(cls, spec.spec, skip_first=True)
        caps = Capabilities(spec.spec, sig, spec.claimed_profile, dict(spec.kwargs))
        names = sig.names
        by_name = names.get("lr") == "lr" and names.get("weight_decay") in ("weight_decay", None)
        caps.features = feature_table(
            caps,
            {
                "lr_schedule": N if names.get("lr") == "lr" else U,
                "wd_schedule": U,
                "groups": N if by_name else U,
                "frozen": N,
                "save_load": N,
            },
        )
        caps.group_lr = caps.group_wd = by_name
        if names.get("lr") != "lr":
            caps.notes.append("lr_schedule: LambdaLR needs the learning rate argument to be called 'lr'")
        caps.notes.append("wd_schedule: only a Constant schedule (folded into weight_decay)")
        impls: dict[str, dict[str, Any]] = {}
        pinned_flags = {"foreach", "fused"} & set(spec.kwargs)
        if "foreach" in sig.arguments and not pinned_flags:
            impls["forloop"] = {"foreach": False}
            impls["foreach"] = {"foreach": True}
            if "fused" in sig.arguments and cls.__module__.startswith("torch."):
                impls["forloop"]["fused"] = impls["foreach"]["fused"] = False
                impls["fused"] = {"foreach": False, "fused": True}
        if not impls:
            impls["default"] = {}
        super().__init__(
            spec,
            cls,
            caps,
            implementations=impls,
            devices=("cpu", "cuda"),
            dtypes=TORCH_DTYPES,
            notes="state read-back and teacher forcing where the probe finds torch's layout",
        )

    def framework_versions(self) -> dict[str, str]:
        return {"torch": str(import_torch(self.info.name).__version__)}

    def create(
        self,
        config: AdamWConfig,
        params: Mapping[str, Array],
        *,
        implementation: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> GenericTorchRun:
        kwargs = self.to_native(config, implementation)
        names = self.caps.signature.names
        wd_arg = names.get("weight_decay")
        grouped = self.caps.features["groups"] is N
        # torch's own count (LambdaLR after optimizer.step()); a constant schedule folded into lr
        run_cfg = fold_constant_lr(config).replace(schedule_count=ScheduleCount.PRE_INCREMENT)
        if not decay_active(config):
            run_cfg = run_cfg.replace(
                weight_decay=0.0, groups=tuple(g.__class__(g.names, g.lr, 0.0) for g in config.groups)
            )
        cls = self.target

        def make(groups: list[dict[str, Any]]) -> Any:
            out = []
            for g in groups:
                d: dict[str, Any] = {"params": g["params"]}
                if grouped:
                    d["lr"] = g["lr"]
                    if wd_arg is not None:
                        d["weight_decay"] = g["weight_decay"]
                out.append(d)
            return cls(out, **kwargs)

        return GenericTorchRun(
            self.info.name,
            make,
            run_cfg,
            params,
            device=device,
            dtype=dtype,
            negate=config.maximize and not self.caps.native_maximize(),
            spec_config=config,
        )
