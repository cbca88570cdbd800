"""What a distributed case feeds: the scenarios, their configurations and the per-rank gradients.

A :class:`DistScenario` is a catalogue scenario (:mod:`conformance.scenarios`: its gradient
generator, its hyperparameter overrides) given shapes that do not divide evenly among the ranks,
optionally per-group hyperparameters and parameters without a gradient (``fixed``: never one,
``requires_grad=False`` in torch; the base scenario ``frozen`` adds ``frozen``, None on odd
steps, and ``late``, None for the first five). Its streams are recorded, deterministic per
(scenario, seed), as every stream of the suite (:mod:`conformance.gradients`).

**Fed gradients and an exact reduction.** Rank :math:`r` of :math:`W` is fed

.. math:: g^{(r)}_i = W\\,G_i \\text{ if } (i + t) \\bmod W = r, \\text{ else } 0,

for element :math:`i` of the recorded gradient :math:`G` (rounded to the dtype) at step
:math:`t`: every element has exactly one non-zero contribution. Summed in *any* order the pieces
give :math:`W G` exactly (adding zeros is exact), and for a power of two :math:`W` both
:math:`W G` and its division by :math:`W` are exact (a change of exponent; no overflow for the
scenarios' magnitudes), before or after the sum (DDP divides before its all-reduce, FSDP2 splits
the division around its reduce-scatter). So the reduced gradient is :math:`G`, bit for bit, what
the single-process run and the reference are fed. For another :math:`W` the division rounds and
no such claim holds: :func:`check_world_size` refuses it. Feeding every rank :math:`G` itself
would not do: :math:`G+G+G` rounds, and gloo's ring sums in an order of its choosing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from adamw_ref import AdamWConfig, ParamGroup, get_profile
from adapters.reference.oracle import round_to
from conformance import scenarios
from conformance.scenarios import Scenario

F64 = NDArray[np.float64]
Grads = dict[str, F64 | None]

#: The dtypes the distributed cases run in (the reduction argument needs no subnormal care there).
DTYPES = ("float32", "float64")
#: torch.optim.AdamW's implementations that run on CPU (the capturable ones need CUDA).
TORCH_IMPLEMENTATIONS = ("forloop", "foreach", "fused")


@dataclass(frozen=True)
class DistScenario:
    """A catalogue scenario with distributed shapes (see the module docstring)."""

    id: str
    base: str
    description: str
    why: str
    steps: int
    shapes: Mapping[str, tuple[int, ...]]
    groups: tuple[ParamGroup, ...] = ()
    fixed: tuple[str, ...] = ()
    #: the step after which a checkpoint is taken in the checkpoint cases
    checkpoint_at: int = 5
    tags: frozenset[str] = field(default_factory=lambda: frozenset({"default"}))

    def scenario(self) -> Scenario:
        """The base scenario with this one's id (so its own stream), shapes and length."""
        return dataclasses.replace(
            scenarios.get(self.base), id=self.id, shapes=dict(self.shapes), steps=self.steps
        )

    def config(self, profile: str) -> AdamWConfig:
        """``profile``'s configuration with the base scenario's overrides and this one's groups."""
        cfg = self.scenario().config(get_profile(profile).config)
        return cfg.replace(groups=(*self.groups, *cfg.groups)) if self.groups else cfg

    def inputs(self, seed: int) -> tuple[dict[str, F64], list[Grads]]:
        """Initial parameters and the recorded stream (float64); ``fixed`` parameters get None."""
        p0, gs = self.scenario().inputs(seed)
        grads: list[Grads] = []
        for g in gs:
            grads.append(
                {k: (None if (k in self.fixed or v is None) else np.asarray(v)) for k, v in g.items()}
            )
        return {k: np.asarray(v, np.float64) for k, v in p0.items()}, grads

    def with_shapes(self, suffix: str, shapes: Mapping[str, tuple[int, ...]]) -> DistScenario:
        """This scenario over other shapes (its own id, so its own stream)."""
        return dataclasses.replace(self, id=f"{self.id}_{suffix}", shapes=dict(shapes))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "base": self.base,
            "description": self.description,
            "why": self.why,
            "steps": self.steps,
            "shapes": {k: list(v) for k, v in self.shapes.items()},
            "groups": [
                {"names": list(g.names), "lr": g.lr, "weight_decay": g.weight_decay} for g in self.groups
            ],
            "fixed": list(self.fixed),
            "checkpoint_at": self.checkpoint_at,
        }


# w: 6 rows (world size 4: shards of 2, 2, 2 and 0 rows); b: 5 (3+2; 2+2+1+0); c: 3 (2+1; 1+1+1+0).
_UNEVEN = {"w": (6, 4), "b": (5,), "c": (3,)}

DIST_SCENARIOS: tuple[DistScenario, ...] = (
    DistScenario(
        "dist_basic",
        "basic",
        "The basic stream over parameters that do not divide among the ranks (6x4, 5, 3).",
        "Wiring: the reduced gradient, the sharded update and the gathered parameters; uneven and "
        "empty shards (world size 4: rank 3 holds no row of w or c).",
        12,
        _UNEVEN,
    ),
    DistScenario(
        "dist_groups",
        "frozen",
        "Two parameter groups with their own lr and weight decay, a parameter without gradient "
        "(requires_grad=False), one without a gradient on odd steps, one without for five steps.",
        "Per-group hyperparameters survive sharding; per-parameter step counts (torch) where a "
        "parameter misses steps; a checkpoint taken while 'late' has no optimizer state yet.",
        12,
        {"w": (6, 4), "b": (5,), "frozen": (3,), "late": (3,), "fixed": (2,)},
        groups=(
            ParamGroup(("b",), lr=3e-2, weight_decay=0.0),
            ParamGroup(("late",), lr=5e-3, weight_decay=0.3),
        ),
        fixed=("fixed",),
        checkpoint_at=3,
    ),
    DistScenario(
        "dist_eps",
        "eps_dominated",
        "Gradients ~1e-9 against eps=1e-8 over the uneven shapes.",
        "Where eps dominates sqrt(v), AdamW is not invariant to the gradient's scale: a reduction "
        "that sums instead of averaging shows here (elsewhere it hides below the bound).",
        12,
        _UNEVEN,
    ),
)

BY_ID: dict[str, DistScenario] = {s.id: s for s in DIST_SCENARIOS}


def get(scenario_id: str) -> DistScenario:
    try:
        return BY_ID[scenario_id]
    except KeyError:
        raise ValueError(f"scenario={scenario_id!r}: unknown; expected one of {sorted(BY_ID)}") from None


def check_world_size(world_size: int) -> int:
    """``world_size`` if the fed reduction is exact for it (a power of two, at least 1)."""
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size={world_size!r}: must be an integer >= 1")
    if world_size & (world_size - 1):
        raise ValueError(
            f"world_size={world_size}: must be a power of two (the fed gradients are reduced "
            "exactly only then: dividing W*G by W rounds for other W)"
        )
    return world_size


def rounded(grads: Sequence[Mapping[str, Any]], dtype: str) -> list[Grads]:
    """Every gradient rounded to ``dtype`` (float64 arrays; None kept)."""
    return [{k: None if v is None else round_to(v, dtype) for k, v in g.items()} for g in grads]


def piece(grad: F64 | None, rank: int, world_size: int, step: int) -> F64 | None:
    """Rank ``rank``'s share of the (dtype-rounded) gradient ``grad`` at ``step`` (0-based): ``W*G``
    on the elements it owns, 0 elsewhere (module docstring). None stays None."""
    if grad is None:
        return None
    g = np.asarray(grad, np.float64)
    owner = (np.arange(g.size).reshape(g.shape) + step) % world_size
    return np.where(owner == rank, g * world_size, 0.0)


def reduce_pieces(pieces: Sequence[F64 | None], world_size: int) -> F64 | None:
    """The average of ``pieces`` (what an averaging all-reduce yields), in float64."""
    if any(p is None for p in pieces):
        return None
    acc = np.zeros_like(np.asarray(pieces[0]))
    for p in pieces:
        acc = acc + np.asarray(p)
    return np.asarray(acc / world_size, np.float64)
