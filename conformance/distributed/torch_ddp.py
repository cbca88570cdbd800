"""``DistributedDataParallel`` + ``torch.optim.AdamW``: replicated parameters and state, the
gradient averaged by DDP's bucketed all-reduce (``find_unused_parameters=True``, so a parameter
without a gradient at a step keeps ``.grad = None`` and AdamW skips it, its count included).

Every rank runs the whole AdamW on the whole reduced gradient: the ranks must agree bit for bit
with each other and with the single-process run.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from adamw_ref import AdamWConfig
from conformance.distributed.problem import F64
from conformance.distributed.torch_common import Holder, optimizer_kwargs, param_groups, slot, to_f64


class DDP:
    name = "ddp"
    checkpoint = True

    def wrap(self, holder: Holder) -> nn.Module:
        dev = next(holder.parameters()).device
        ids = [dev.index] if dev.type == "cuda" else None
        return DistributedDataParallel(holder, device_ids=ids, find_unused_parameters=True)

    def optimizer(self, holder: Holder, config: AdamWConfig, implementation: str) -> Any:
        groups = param_groups(config, holder.named())
        return torch.optim.AdamW(groups, **optimizer_kwargs(config, implementation))

    def full_params(self, holder: Holder) -> dict[str, F64]:
        return {n: to_f64(p) for n, p in holder.named().items()}

    def full_state(self, holder: Holder, opt: Any) -> dict[str, dict[str, Any]]:
        return {n: slot(opt.state[p]) for n, p in holder.named().items() if p in opt.state}

    def shards(self, holder: Holder, opt: Any) -> dict[str, list[int]]:
        w = dist.get_world_size()
        return {n: [p.numel()] * w for n, p in holder.named().items()}

    def local_states(self, opt: Any) -> Any:
        return opt.state
