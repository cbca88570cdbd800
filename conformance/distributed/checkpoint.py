"""Sharded checkpoints with ``torch.distributed.checkpoint`` (DCP): save at step k, resume at the
same or another world size, continue.

The recipe is torch's own (``torch.distributed.checkpoint.state_dict``): ``get_state_dict(model,
optimizer)`` gives a template of DTensors (FSDP2) or tensors (DDP), ``dcp.save`` writes each
rank's shards, ``dcp.load`` reads them into the template of the *new* world size (DCP reshards),
``set_state_dict`` puts the result into the model and the optimizer.

Three ways of loading (:data:`LOAD_MODES`), because the template is where torch 2.13 goes wrong:
on a fresh optimizer ``get_state_dict`` calls ``_init_optim_state``, which runs one
``optimizer.step()`` with zero gradients and lr 0 to *materialise* the state, so every
parameter that requires a gradient gets ``step = 1``, ``exp_avg = exp_avg_sq = 0``. A parameter
that had no state at step k (no gradient yet: ``late`` in ``dist_groups``) is not in the
checkpoint, and then

* ``standard`` (``dcp.load`` strict, the default): fails, "Missing key in checkpoint state_dict:
  optim.state.late.step";
* ``partial`` (``DefaultLoadPlanner(allow_partial_load=True)``): loads, and ``late`` keeps the
  materialised ``step = 1``: its first real update uses bias correction :math:`k=2` instead of
  :math:`k=1` (one count too many, for ever);
* ``filtered`` (our work-around): drop from the template the optimizer entries the checkpoint's
  metadata does not have, load strictly, and ``set_state_dict(..., options=
  StateDictOptions(strict=False))``; ``Optimizer.load_state_dict`` replaces the state, so
  ``late`` has none, as in the uninterrupted run.

Planted bugs applied after loading (:data:`RESUME_PLANTS`): ``extra_step_on_resume`` (every count
one too high: a state materialisation that is not undone) and ``per_shard_step_on_resume``
(ranks other than 0 restart their counts: per-shard bias correction).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.filesystem import FileSystemReader
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict
from torch.distributed.checkpoint.state_dict_loader import load as dcp_load
from torch.distributed.checkpoint.state_dict_saver import save as dcp_save

LOAD_MODES = ("standard", "partial", "filtered")
RESUME_PLANTS = ("extra_step_on_resume", "per_shard_step_on_resume")


def save(holder: nn.Module, opt: Any, path: str) -> None:
    """Write the model's and the optimizer's state (each rank its shards) to ``path``."""
    model_sd, optim_sd = get_state_dict(holder, opt)
    dcp_save({"model": model_sd, "optim": optim_sd}, checkpoint_id=path)


def _present(path: str) -> set[str]:
    """The parameter names that have optimizer state in the checkpoint's metadata."""
    md = FileSystemReader(path).read_metadata().state_dict_metadata
    return {k.split(".")[2] for k in md if k.startswith("optim.state.")}


def load(holder: nn.Module, opt: Any, path: str, mode: str) -> None:
    """Load ``path`` into a fresh ``holder`` and ``opt`` of any world size (``mode``: see the
    module docstring)."""
    if mode not in LOAD_MODES:
        raise ValueError(f"checkpoint load mode {mode!r}: expected one of {LOAD_MODES}")
    model_sd, optim_sd = get_state_dict(holder, opt)  # materialises the optimizer state
    sd: dict[str, Any] = {"model": model_sd, "optim": optim_sd}
    strict = True
    if mode == "partial":
        dcp_load(sd, checkpoint_id=path, planner=DefaultLoadPlanner(allow_partial_load=True))
    else:
        if mode == "filtered":
            present = _present(path)
            state = sd["optim"]["state"]
            for name in [k for k in state if k not in present]:
                del state[name]
            strict = False
        dcp_load(sd, checkpoint_id=path)
    set_state_dict(
        holder,
        opt,
        model_state_dict=sd["model"],
        optim_state_dict=sd["optim"],
        options=StateDictOptions(strict=strict),
    )


def plant(states: Any, name: str) -> None:
    """Apply a planted resume bug to the (local) optimizer ``states`` (param -> slot)."""
    if name == "extra_step_on_resume":
        for st in states.values():
            st["step"] += 1
    elif name == "per_shard_step_on_resume":
        if dist.get_rank() != 0:
            for st in states.values():
                st["step"] = torch.zeros_like(st["step"])
    else:
        raise ValueError(f"resume plant {name!r}: expected one of {RESUME_PLANTS}")


def loaded_steps(holder: Any, states: Any) -> dict[str, float]:
    """Each parameter's count right after loading (absent: no state)."""
    return {n: float(states[p]["step"]) for n, p in holder.named().items() if p in states}
