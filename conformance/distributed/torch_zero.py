"""``ZeroRedundancyOptimizer(AdamW)`` under DDP: each rank keeps the AdamW state of a subset of
the parameters (ZeRO stage 1: whole parameters, balanced by size), steps only those, then
broadcasts them; DDP averages the gradients.

A parameter's update is computed on one rank only, from that rank's state; the per-parameter
step counts live with the owner. The gathered state (:meth:`ZeRO.full_state`) collects every
owner's slots.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.optim import ZeroRedundancyOptimizer
from torch.nn.parallel import DistributedDataParallel

from adamw_ref import AdamWConfig
from conformance.distributed.problem import F64
from conformance.distributed.torch_common import Holder, optimizer_kwargs, param_groups, slot, to_f64


class ZeRO:
    name = "zero"
    #: ZeroRedundancyOptimizer keeps no DCP-shardable state (its state_dict needs
    #: consolidate_state_dict to one rank first), so no checkpoint cases.
    checkpoint = False

    def wrap(self, holder: Holder) -> nn.Module:
        dev = next(holder.parameters()).device
        ids = [dev.index] if dev.type == "cuda" else None
        return DistributedDataParallel(holder, device_ids=ids, find_unused_parameters=True)

    def optimizer(self, holder: Holder, config: AdamWConfig, implementation: str) -> Any:
        groups = param_groups(config, holder.named())
        return ZeroRedundancyOptimizer(
            groups, optimizer_class=torch.optim.AdamW, **optimizer_kwargs(config, implementation)
        )

    def full_params(self, holder: Holder) -> dict[str, F64]:
        return {n: to_f64(p) for n, p in holder.named().items()}

    def full_state(self, holder: Holder, opt: Any) -> dict[str, dict[str, Any]]:
        mine = {n: slot(opt.optim.state[p]) for n, p in holder.named().items() if p in opt.optim.state}
        every: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(every, mine)
        out: dict[str, dict[str, Any]] = {}
        for part in every:
            out.update(part)
        return out

    def shards(self, holder: Holder, opt: Any) -> dict[str, list[int]]:
        """Elements of each parameter whose state each rank owns (a parameter lives on one)."""
        w = dist.get_world_size()
        out = {n: [0] * w for n in holder.names}
        ids = {id(p): n for n, p in holder.named().items()}
        for r, groups in enumerate(opt._partition_parameters()):
            for g in groups:
                for p in g["params"]:
                    out[ids[id(p)]][r] = p.numel()
        return out

    def local_states(self, opt: Any) -> Any:
        return opt.optim.state
