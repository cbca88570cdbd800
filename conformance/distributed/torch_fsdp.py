"""FSDP2 (``torch.distributed.fsdp.fully_shard``) + ``torch.optim.AdamW`` over DTensor parameters.

Every parameter is sharded along dim 0 in ``ceil(n/W)``-row chunks (uneven: the last ranks get
fewer rows, possibly none), the gradients are reduce-scattered (averaged) into the shards, and
AdamW steps each rank's local shard with that rank's slice of ``exp_avg``/``exp_avg_sq``. The step
count (``state['step']``) is a plain tensor per parameter, one copy per rank: a rank whose copy
differs uses another bias correction for its rows (the planted ``per_shard_step_on_resume``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from adamw_ref import AdamWConfig
from conformance.distributed.problem import F64
from conformance.distributed.torch_common import Holder, optimizer_kwargs, param_groups, slot, to_f64


class FSDP2:
    name = "fsdp2"
    checkpoint = True

    def wrap(self, holder: Holder) -> nn.Module:
        # The mesh on the parameters' device: without one fully_shard builds it on CUDA whenever
        # a GPU is visible, and gloo ranks on a GPU host fail ("invalid device ordinal").
        kind = next(holder.parameters()).device.type
        fully_shard(holder, mesh=init_device_mesh(kind, (dist.get_world_size(),)))
        return holder

    def optimizer(self, holder: Holder, config: AdamWConfig, implementation: str) -> Any:
        groups = param_groups(config, holder.named())
        return torch.optim.AdamW(groups, **optimizer_kwargs(config, implementation))

    def full_params(self, holder: Holder) -> dict[str, F64]:
        return {n: to_f64(p) for n, p in holder.named().items()}  # collective: every rank

    def full_state(self, holder: Holder, opt: Any) -> dict[str, dict[str, Any]]:
        named = holder.named()
        has = [n in named and named[n] in opt.state for n in holder.names]
        every: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(every, has)  # the same parameters have state on every rank
        if any(e != has for e in every):
            raise RuntimeError(f"ranks disagree on which parameters have optimizer state: {every}")
        return {n: slot(opt.state[named[n]]) for n, h in zip(holder.names, has, strict=True) if h}

    def shards(self, holder: Holder, opt: Any) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for n, p in holder.named().items():
            mine = int(p.to_local().numel()) if hasattr(p, "to_local") else int(p.numel())
            every: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(every, mine)
            out[n] = [int(x) for x in every]
        return out

    def local_states(self, opt: Any) -> Any:
        return opt.state
