"""Seeded, recorded gradient streams (numpy, deterministic, independent of the implementation).

A stream is generated once per (scenario, seed) in float64 and fed, identically, to the reference
and to every implementation: the trajectories are *open loop* (gradients never depend on the
parameters), so two implementations can only drift apart through their own arithmetic.
The random generator is ``numpy.random.default_rng([seed, crc32(scenario_id)])`` (PCG64): the same
seed and scenario give bit-identical streams on every platform.

Generators (``kind``), each taking keyword arguments from the scenario:

* ``normal``: :math:`g = \\mu + \\sigma z`, a fixed per-element drift :math:`\\mu` (``drift``) plus
  white noise (``scale``).
* ``zero``: all zeros (pure decay).
* ``nullspace``: ``normal`` with a fixed fraction (``null_fraction``) of elements always exactly 0.
* ``sign_flip``: :math:`g=\\pm A` flipping sign every ``period`` steps, plus small noise.
* ``decreasing``: ``normal`` scaled by ``decay**t`` (v shrinks: AMSGrad's maximum matters).
* ``decay_then_normal``: zeros for ``quiet`` steps (pure decay warm-up), then ``normal``.
* ``frozen``: ``normal``, but parameter ``frozen`` gets ``None`` on odd steps and ``late`` gets
  ``None`` for the first ``late_start`` steps.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
Grads = dict[str, F64 | None]

GENERATORS = ("normal", "zero", "nullspace", "sign_flip", "decreasing", "decay_then_normal", "frozen")


def rng_for(scenario_id: str, seed: int) -> np.random.Generator:
    """The stream's generator: seeded by ``seed`` and a stable hash of the scenario id."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r}: must be an integer >= 0")
    return np.random.default_rng([seed, zlib.crc32(scenario_id.encode())])


def initial_params(
    rng: np.random.Generator, shapes: Mapping[str, tuple[int, ...]], scale: float, offset: float = 0.0
) -> dict[str, F64]:
    """``offset + scale * N(0, 1)`` per element, in float64."""
    return {k: offset + scale * rng.standard_normal(s) for k, s in shapes.items()}


def stream(
    kind: str, rng: np.random.Generator, shapes: Mapping[str, tuple[int, ...]], steps: int, **kw: Any
) -> list[Grads]:
    """``steps`` gradient dicts of generator ``kind`` (see the module docstring)."""
    if kind not in GENERATORS:
        raise ValueError(f"gradient kind={kind!r}: expected one of {list(GENERATORS)}")
    if steps < 0:
        raise ValueError(f"steps={steps!r}: must be >= 0")
    scale = float(kw.get("scale", 1.0))
    drift = {k: float(kw.get("drift", 0.5)) * scale * rng.standard_normal(s) for k, s in shapes.items()}
    out: list[Grads] = []
    null = {k: rng.random(s) < float(kw.get("null_fraction", 0.25)) for k, s in shapes.items()}
    for t in range(steps):
        g: Grads = {}
        for k, s in shapes.items():
            noise = scale * rng.standard_normal(s)
            if kind == "zero":
                g[k] = np.zeros(s)
            elif kind == "sign_flip":
                sign = 1.0 if (t // int(kw.get("period", 5))) % 2 == 0 else -1.0
                g[k] = sign * scale * (1.0 + 0.01 * rng.standard_normal(s))
            elif kind == "decreasing":
                g[k] = (drift[k] + noise) * float(kw.get("decay", 0.9)) ** t
            elif kind == "decay_then_normal" and t < int(kw.get("quiet", 10)):
                g[k] = np.zeros(s)
            else:
                val = drift[k] + noise
                g[k] = np.where(null[k], 0.0, val) if kind == "nullspace" else val
            if kind == "frozen" and (
                (k == "frozen" and t % 2 == 1) or (k == "late" and t < int(kw.get("late_start", 5)))
            ):
                g[k] = None
        out.append(g)
    return out
