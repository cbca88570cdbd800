"""torch.distributed plumbing shared by the strategies: the process group, a module that turns a
fed gradient into ``.grad`` through autograd, AdamW's construction, the single-process run.

Imported only inside rank processes (it imports torch at module level).

**Feeding a gradient through the strategy's own reduction.** :class:`Holder` registers one
``nn.Parameter`` per named parameter and its ``forward(pieces)`` returns
:math:`\\sum_n \\sum_i p_{n,i}\\,g^{(r)}_{n,i}`: its gradient with respect to :math:`p_n` is the
rank's piece :math:`g^{(r)}_n` exactly (the derivative of a sum is 1, times the piece). So
``loss.backward()`` hands the strategy (DDP's bucketed all-reduce, FSDP2's reduce-scatter) exactly
the piece, and its reduction produces the recorded gradient (:mod:`.problem`). A parameter whose
gradient is None at a step is left out of the sum: globally unused, its ``.grad`` stays None.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from adamw_ref import AdamWConfig
from adapters.torch.adapter import TorchAdamW
from conformance.distributed.problem import F64, Grads

#: Seconds a collective may wait before the process group gives up (the launcher's own limit
#: kills a stuck rank sooner).
PG_TIMEOUT_S = 600.0


class Strategy(Protocol):
    """One way of distributing AdamW (``torch_ddp``, ``torch_zero``, ``torch_fsdp``)."""

    name: str
    checkpoint: bool  # whether torch.distributed.checkpoint can save and reshard its state

    def wrap(self, holder: Holder) -> nn.Module: ...

    def optimizer(self, holder: Holder, config: AdamWConfig, implementation: str) -> Any: ...

    def full_params(self, holder: Holder) -> dict[str, F64]: ...

    def full_state(self, holder: Holder, opt: Any) -> dict[str, dict[str, Any]]: ...

    def shards(self, holder: Holder, opt: Any) -> dict[str, list[int]]: ...

    def local_states(self, opt: Any) -> Any: ...


def init_group(backend: str, device: str) -> tuple[int, int, torch.device]:
    """Join the process group named by the environment (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT``: the launcher's or torchrun's); the rank's device."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dev = torch.device("cpu")
    if device == "cuda":
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    if not dist.is_initialized():
        dist.init_process_group(
            backend, rank=rank, world_size=world, timeout=datetime.timedelta(seconds=PG_TIMEOUT_S)
        )
    return rank, world, dev


def torch_dtype(dtype: str) -> torch.dtype:
    out: torch.dtype = getattr(torch, dtype)
    return out


class Holder(nn.Module):
    """Named parameters; ``forward(pieces)`` is the linear loss whose gradient is the piece."""

    def __init__(
        self, params: Mapping[str, F64], dtype: str, device: torch.device, fixed: Sequence[str] = ()
    ) -> None:
        super().__init__()
        self.names = list(params)
        for n, a in params.items():
            t = torch.tensor(np.asarray(a, np.float64), dtype=torch_dtype(dtype), device=device)
            self.register_parameter(n, nn.Parameter(t, requires_grad=n not in fixed))

    def forward(self, pieces: Mapping[str, torch.Tensor | None]) -> torch.Tensor:
        terms = [(getattr(self, n) * g).sum() for n, g in pieces.items() if g is not None]
        out: torch.Tensor = torch.stack(terms).sum()
        return out

    def named(self) -> dict[str, nn.Parameter]:
        return {n: getattr(self, n) for n in self.names}


def optimizer_kwargs(config: AdamWConfig, implementation: str) -> dict[str, Any]:
    """``torch.optim.AdamW``'s keyword arguments for ``config`` (the torch adapter's translation,
    which refuses a configuration torch cannot express)."""
    kw = TorchAdamW().to_native(config, implementation)
    kw.pop("tensor_lr", None)
    return kw


def param_groups(config: AdamWConfig, named: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One group per ``(lr, weight_decay)`` of ``config.group_for``, in parameter order (as the
    torch adapter builds them)."""
    groups: dict[tuple[float, float], list[Any]] = {}
    for n, p in named.items():
        groups.setdefault(config.group_for(n), []).append(p)
    return [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]


def feed(module: nn.Module, pieces: Mapping[str, F64 | None], dtype: str, device: torch.device) -> None:
    """Forward and backward of the linear loss: each parameter's reduced ``.grad`` is set."""
    tp = {
        n: None if g is None else torch.tensor(g, dtype=torch_dtype(dtype), device=device)
        for n, g in pieces.items()
    }
    if all(g is None for g in tp.values()):
        return
    module(tp).backward()


def to_f64(t: Any) -> F64:
    """A tensor (a DTensor's full value: call it on every rank) as a float64 array."""
    full = t.full_tensor() if hasattr(t, "full_tensor") else t
    return np.array(full.detach().to("cpu", torch.float64).numpy(), dtype=np.float64)


def slot(st: Mapping[str, Any]) -> dict[str, Any]:
    """One parameter's AdamW state as arrays: ``step``, ``m``, ``v`` (DTensors made full)."""
    return {"step": float(st["step"]), "m": to_f64(st["exp_avg"]), "v": to_f64(st["exp_avg_sq"])}


def digest(arrays: Mapping[str, F64]) -> str:
    h = hashlib.sha256()
    for n in sorted(arrays):
        h.update(n.encode())
        h.update(np.ascontiguousarray(arrays[n]).tobytes())
    return h.hexdigest()


def single_process(
    config: AdamWConfig,
    implementation: str,
    p0: Mapping[str, F64],
    grads: Sequence[Grads],
    dtype: str,
    device: torch.device,
    fixed: Sequence[str] = (),
) -> tuple[list[dict[str, F64]], dict[str, dict[str, Any]]]:
    """The same AdamW, one process, fed the recorded gradients directly: the trajectory and
    the final state (what the distributed run must reproduce bit for bit)."""
    holder = Holder(p0, dtype, device, fixed)
    named = holder.named()
    opt = torch.optim.AdamW(param_groups(config, named), **optimizer_kwargs(config, implementation))
    traj = []
    for g in grads:
        for n, p in named.items():
            gn = g[n]
            p.grad = None if gn is None else torch.tensor(gn, dtype=torch_dtype(dtype), device=device)
        opt.step()
        traj.append({n: to_f64(p) for n, p in named.items()})
    state = {n: slot(opt.state[p]) for n, p in named.items() if p in opt.state}
    return traj, state
