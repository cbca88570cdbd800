"""Worker jobs of the state-fidelity report (:mod:`conformance.reliability.fidelity`).

* ``prime``: create a run, step ``N`` times, ``run.save(path)``, step ``M`` more times; return
  the state at the save and the parameters after each later step (bit patterns);
* ``resume``: in another process, create a fresh run of the same config (other initial
  parameters: ``load`` must restore them) on the job's ``device`` (default ``cpu``; ``cuda``:
  the file saved on the CPU is loaded on a GPU), ``run.load(path)``, step the same ``M``
  gradients.

Configs (:func:`config_for`): ``plain`` is the adapter's own profile with ``lr = 1e-2,
weight_decay = 0.1``; ``features`` adds what the adapter supports of a warmup-cosine lr
schedule, AMSGrad, a decay-free group for ``b`` and a frozen ``b`` at step 2 of the priming.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from conformance.reliability.common import bits, from_bits

SHAPES: dict[str, tuple[int, ...]] = {"w": (3, 4), "b": (5,), "s": (), "z": (0,)}


def problem(steps: int, seed: int = 7) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Initial parameters and ``steps`` gradients (float64, rounded to the dtype by the run)."""
    rng = np.random.default_rng(seed)
    params = {n: rng.standard_normal(s) for n, s in SHAPES.items()}
    scale = {"w": 1e-3, "b": 1.0, "s": 0.1, "z": 1.0}
    grads = [{n: scale[n] * rng.standard_normal(s) for n, s in SHAPES.items()} for _ in range(steps)]
    return params, grads


def config_for(adapter: Any, variant: str) -> tuple[Any, list[str], int | None]:
    """The config of ``variant`` for ``adapter``, the features it uses, and the priming step
    (1-based) at which ``b`` is frozen (None: never)."""
    from adamw_ref import ParamGroup, WarmupCosine, get_profile
    from adapters import Support

    cfg = get_profile(adapter.info.profile).config.replace(lr=1e-2, weight_decay=0.1)
    if variant == "plain":
        return cfg, [], None
    feats = adapter.info.features
    used: list[str] = []

    def has(name: str) -> bool:
        return feats.get(name, Support.UNSUPPORTED) is not Support.UNSUPPORTED

    if has("lr_schedule"):
        cfg = cfg.replace(lr_schedule=WarmupCosine(warmup_steps=2, total_steps=20, final=0.1))
        used.append("lr_schedule")
    if has("amsgrad"):
        cfg = cfg.replace(amsgrad=True)
        used.append("amsgrad")
    if has("groups"):
        cfg = cfg.replace(groups=(ParamGroup(names=("b",), weight_decay=0.0),))
        used.append("groups")
    frozen = None
    if has("frozen"):
        frozen = 2
        used.append("frozen")
    return cfg, used, frozen


def _state_bits(run: Any) -> dict[str, Any]:
    st = run.state()
    own = st.param_steps
    if own is None and callable(getattr(run, "param_steps", None)):
        own = run.param_steps()
    return {
        "params": {n: bits(a) for n, a in run.params().items()},
        "step": int(st.step),
        "m": {n: bits(a) for n, a in st.m.items()},
        "v": {n: bits(a) for n, a in st.v.items()},
        "v_max": None if st.v_max is None else {n: bits(a) for n, a in st.v_max.items()},
        "param_steps": None if own is None else {n: int(k) for n, k in own.items()},
    }


def _grads(g: Mapping[str, Any]) -> dict[str, Any]:
    return {n: None if x is None else from_bits(x, SHAPES[n]) for n, x in g.items()}


def _create(job: Mapping[str, Any], params: Mapping[str, Any]) -> tuple[Any, Any]:
    from adamw_ref import AdamWConfig
    from adapters import load_adapter

    adapter = load_adapter(job["adapter"])
    cfg = AdamWConfig.from_json(job["config"])  # the config the prime job used
    impl, device = job.get("implementation"), job.get("device", "cpu")
    run = adapter.create(cfg, params, implementation=impl, dtype=job["dtype"], device=device)
    return adapter, run


def prime(job: Mapping[str, Any]) -> dict[str, Any]:
    from adapters import load_adapter

    n, m = int(job["n"]), int(job["m"])
    params, grads = problem(n + m)
    adapter = load_adapter(job["adapter"])
    cfg, used, frozen = config_for(adapter, job["variant"])
    if frozen is not None:
        grads[frozen - 1] = {**grads[frozen - 1], "b": None}
    run = adapter.create(cfg, params, implementation=job.get("implementation"), dtype=job["dtype"])
    after: list[dict[str, list[str]]] = []
    try:
        for t, g in enumerate(grads):
            run.step(g)
            if t + 1 == n:
                run.save(Path(job["path"]))
                saved = _state_bits(run)
            elif t + 1 > n:
                after.append({k: bits(a) for k, a in run.params().items()})
        final = _state_bits(run)
    finally:
        run.close()
    return {
        "config": cfg.to_json(),
        "features": used,
        "grads": [{k: None if x is None else bits(x) for k, x in g.items()} for g in grads[n:]],
        "saved": saved,
        "after": after,
        "final": final,
    }


def resume(job: Mapping[str, Any]) -> dict[str, Any]:
    params, _ = problem(0, seed=11)  # other initial values: load must restore the saved ones
    _, run = _create(job, params)
    after: list[dict[str, list[str]]] = []
    try:
        run.load(Path(job["path"]))
        loaded = _state_bits(run)
        for g in job["grads"]:
            run.step(_grads(g))
            after.append({k: bits(a) for k, a in run.params().items()})
        final = _state_bits(run)
    finally:
        run.close()
    return {"loaded": loaded, "after": after, "final": final}


def first_difference(a: Any, b: Any, where: str = "") -> str | None:
    """Where two bit-pattern documents first differ (``None`` when identical)."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{where}.{k}: present on one side only"
            d = first_difference(a[k], b[k], f"{where}.{k}")
            if d:
                return d
        return None
    if isinstance(a, Sequence) and isinstance(b, Sequence) and not isinstance(a, str):
        if len(a) != len(b):
            return f"{where}: length {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            d = first_difference(x, y, f"{where}[{i}]")
            if d:
                return d
        return None
    if a != b:
        if isinstance(a, str) and isinstance(b, str) and len(a) == len(b) == 16:
            x, y = from_bits([a])[0], from_bits([b])[0]
            return f"{where}: {x!r} vs {y!r}"
        return f"{where}: {a!r} vs {b!r}"
    return None


def max_ulps(a: Any, b: Any, dtype: str) -> float:
    """The largest distance between two bit-pattern documents of the same structure, in ulps of
    ``dtype`` at the first's values (0 when identical; inf where one side is NaN or infinite)."""
    from conformance.compare import abs_err, ulp_of

    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return max((max_ulps(a[k], b[k], dtype) for k in a if k in b), default=0.0)
    if isinstance(a, Sequence) and not isinstance(a, str) and a and isinstance(a[0], str):
        x, y = from_bits(a), from_bits(b)
        with np.errstate(all="ignore"):
            u = abs_err(x, y) / ulp_of(x, dtype)
        u = np.where(np.isnan(u), np.inf, u)
        return float(np.max(u)) if u.size else 0.0
    if isinstance(a, Sequence) and not isinstance(a, str):
        return max((max_ulps(x, y, dtype) for x, y in zip(a, b, strict=True)), default=0.0)
    return 0.0 if a == b else math.inf
