r"""One live torch optimizer over named parameters: :class:`TorchRun` (an ``OptimizerRun``).

Shared by every torch-based adapter (``torch.optim`` and third-party plugins). Subclasses only
say how the optimizer is built and how its state maps to the canonical
:math:`(k, m, v, v^{max})`; the rest (parameter groups from ``config.groups``, the
``LambdaLR`` schedule, frozen parameters, pickle-free save/load, teacher forcing) lives here.

Schedules: ``LambdaLR(optimizer, lambda c: eta(c + shift))`` with ``scheduler.step()`` after
every ``optimizer.step()``; ``shift=0`` is ``pre_increment`` (the first update sees
:math:`\eta(0)`), ``shift=1`` emulates ``post_increment``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from adamw_ref import AdamWConfig, Constant, ScheduleCount
from adapters.arrays import as_float64, load_arrays, save_arrays
from adapters.errors import AdapterError
from adapters.protocol import Array, CanonicalState
from adapters.torch.common import (
    decode,
    encode,
    resolve_device,
    resolve_dtype,
    tensor_from_bits,
    to_float64,
    to_tensor,
)

if TYPE_CHECKING:
    import torch

FORMAT = "adamw-ref/torch-run"

#: Builds the optimizer from torch param-group dicts (``params``, ``lr``, ``weight_decay``).
OptimizerFactory = Callable[[list[dict[str, Any]]], Any]


class TorchRun:
    """Named numpy parameters driven by a ``torch.optim.Optimizer``.

    Parameters sharing ``config.group_for(name)`` form one torch param group with that ``lr``
    and ``weight_decay * wd_schedule(0)`` (only constant decay schedules reach here).
    """

    def __init__(
        self,
        adapter: str,
        make_optimizer: OptimizerFactory,
        config: AdamWConfig,
        params: Mapping[str, Array],
        *,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> None:
        import torch

        if not isinstance(params, Mapping) or not params:
            raise AdapterError(f"{adapter}: params must be a non-empty mapping name -> array")
        self.adapter = adapter
        self.config = config
        self.device = resolve_device(adapter, device)
        self.dtype_name = dtype
        self.dtype = resolve_dtype(adapter, dtype)
        self.names = list(params)
        self.tensors: dict[str, torch.Tensor] = {}
        for n in self.names:
            t = to_tensor(params[n], f"params[{n!r}]", dtype, self.device)
            self.tensors[n] = t.requires_grad_(True)
        omega = float(config.wd_schedule(0))
        groups: dict[tuple[float, float], list[torch.Tensor]] = {}
        for n in self.names:
            lr, wd = config.group_for(n)
            groups.setdefault((lr, wd * omega if omega != 1.0 else wd), []).append(self.tensors[n])
        self.optimizer = make_optimizer(
            [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]
        )
        self.steps = 0
        self.scheduler: Any = None
        sched = config.lr_schedule
        if not (isinstance(sched, Constant) and sched.value == 1.0):
            shift = 1 if config.schedule_count is ScheduleCount.POST_INCREMENT else 0
            self._eta: Callable[[int], float] = lambda c: float(sched(c + shift))
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._eta)

    # -- hooks for subclasses -----------------------------------------------------------------
    def read_slot(self, p: torch.Tensor) -> tuple[int, Any, Any, Any]:
        """``(k, m, v, v_max)`` of ``p`` (tensors or None when the slot is not initialised)."""
        st = self.optimizer.state.get(p, {})
        if not st:
            return 0, None, None, None
        return (int(st["step"].item()), st["exp_avg"], st["exp_avg_sq"], st.get("max_exp_avg_sq"))

    def write_slot(self, p: torch.Tensor, k: int, m: Any, v: Any, vmax: Any) -> None:
        """Overwrite ``p``'s state with the canonical ``(k, m, v, v_max)`` (tensors like ``p``)."""
        import torch

        group = next(g for g in self.optimizer.param_groups if any(q is p for q in g["params"]))
        on_dev = bool(group.get("fused") or group.get("capturable"))
        # torch.optim.optimizer._get_scalar_dtype: float32 for fused, else the default float dtype
        wide = torch.get_default_dtype() == torch.float64 and not group.get("fused")
        st = self.optimizer.state[p]
        st["step"] = torch.tensor(
            float(k), dtype=torch.float64 if wide else torch.float32, device=p.device if on_dev else "cpu"
        )
        st["exp_avg"], st["exp_avg_sq"] = m, v
        if group.get("amsgrad"):
            st["max_exp_avg_sq"] = vmax if vmax is not None else torch.zeros_like(p)

    def set_step_count(self, steps: int) -> None:
        """Optimizer-wide counters other than the per-slot ones (none for torch.optim)."""

    # -- OptimizerRun -------------------------------------------------------------------------
    def step(self, grads: Mapping[str, Array | None]) -> None:
        if not isinstance(grads, Mapping):
            raise AdapterError(f"{self.adapter}: grads must be a mapping name -> array or None")
        missing = [n for n in self.names if n not in grads]
        extra = [n for n in grads if n not in self.tensors]
        if missing or extra:
            raise AdapterError(
                f"{self.adapter}: grads names {sorted(grads)} differ from params "
                f"(missing {missing}, unknown {extra}); use None to freeze a parameter"
            )
        for n in self.names:
            g, p = grads[n], self.tensors[n]
            if g is None:
                p.grad = None
                continue
            arr = as_float64(g, f"grads[{n!r}]")
            if arr.shape != tuple(p.shape):
                raise AdapterError(
                    f"{self.adapter}: grads[{n!r}] has shape {arr.shape}, parameter {tuple(p.shape)}"
                )
            p.grad = to_tensor(arr, f"grads[{n!r}]", self.dtype_name, self.device)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.steps += 1

    def params(self) -> dict[str, Array]:
        return {n: to_float64(t) for n, t in self.tensors.items()}

    def param_steps(self) -> dict[str, int]:
        """Each parameter's own update count (torch ``state['step']``)."""
        return {n: self.read_slot(t)[0] for n, t in self.tensors.items()}

    def state(self) -> CanonicalState:
        m: dict[str, Array] = {}
        v: dict[str, Array] = {}
        vmax: dict[str, Array] | None = {} if self.config.amsgrad else None
        for n, t in self.tensors.items():
            _, mt, vt, xt = self.read_slot(t)
            zero = np.zeros(tuple(t.shape), dtype=np.float64)
            m[n] = zero if mt is None else to_float64(mt)
            v[n] = zero if vt is None else to_float64(vt)
            if vmax is not None:
                vmax[n] = zero if xt is None else to_float64(xt)
        return CanonicalState(step=self.steps, m=m, v=v, v_max=vmax)

    def set_state(self, params: Mapping[str, Array], state: CanonicalState) -> None:
        """Overwrite parameters, moments and counts. Per-parameter counts come from
        ``state.param_steps`` when the state carries them, else every slot gets ``state.step``."""
        import torch

        own = getattr(state, "param_steps", None) or {}
        with torch.no_grad():
            for n, t in self.tensors.items():
                t.copy_(to_tensor(params[n], f"params[{n!r}]", self.dtype_name, self.device))
                m = to_tensor(state.m[n], f"state.m[{n!r}]", self.dtype_name, self.device)
                v = to_tensor(state.v[n], f"state.v[{n!r}]", self.dtype_name, self.device)
                x = None
                if state.v_max is not None and n in state.v_max:
                    x = to_tensor(state.v_max[n], f"state.v_max[{n!r}]", self.dtype_name, self.device)
                self.write_slot(t, int(own.get(n, state.step)), m, v, x)
        self.steps = int(state.step)
        self.set_step_count(self.steps)
        if self.scheduler is not None:
            bases = self.scheduler.base_lrs
            for g, base in zip(self.optimizer.param_groups, bases, strict=True):
                lr = base * self._eta(self.steps)
                if isinstance(g["lr"], torch.Tensor):  # tensor lr: in place, as LambdaLR does
                    g["lr"].fill_(lr)
                else:
                    g["lr"] = lr
            self.scheduler.last_epoch = self.steps
            self.scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def save(self, path: Path) -> None:
        """``optimizer.state_dict()``, the parameters and the scheduler, without pickle."""
        arrays: dict[str, Any] = {}
        sched = None
        if self.scheduler is not None:
            sd = {k: v for k, v in self.scheduler.state_dict().items() if k != "lr_lambdas"}
            sched = encode(sd, arrays, "scheduler")
        meta = {
            "format": FORMAT,
            "adapter": self.adapter,
            "steps": self.steps,
            "dtype": self.dtype_name,
            "params": {n: encode(t, arrays, f"param/{n}") for n, t in self.tensors.items()},
            "optimizer": encode(self.optimizer.state_dict(), arrays, "opt"),
            "scheduler": sched,
        }
        save_arrays(path, arrays, meta)

    def load(self, path: Path) -> None:
        """Restore what :meth:`save` wrote into this run (same config, names and dtype)."""
        import torch

        arrays, meta = load_arrays(path)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise AdapterError(f"{self.adapter}: {str(path)!r} is not a {FORMAT} file")
        if meta["adapter"] != self.adapter or meta["dtype"] != self.dtype_name:
            raise AdapterError(
                f"{self.adapter}: {str(path)!r} was saved by {meta['adapter']} "
                f"({meta['dtype']}); this run is {self.adapter} ({self.dtype_name})"
            )
        if sorted(meta["params"]) != sorted(self.names):
            raise AdapterError(
                f"{self.adapter}: saved params {sorted(meta['params'])} differ from {sorted(self.names)}"
            )
        with torch.no_grad():
            for n, t in self.tensors.items():
                doc = meta["params"][n]
                t.copy_(tensor_from_bits(arrays[doc["__tensor__"]], doc["dtype"], self.device))
        self.optimizer.load_state_dict(decode(meta["optimizer"], arrays, self.device))
        if self.scheduler is not None:
            sd = decode(meta["scheduler"], arrays, self.device)
            sd["lr_lambdas"] = [None] * len(self.optimizer.param_groups)
            self.scheduler.load_state_dict(sd)
        self.steps = int(meta["steps"])

    def close(self) -> None:
        self.optimizer.state.clear()
        self.tensors.clear()
