r"""``optax.adamw`` on parameters sharded over 8 virtual CPU devices, against the same jit unsharded.

Run in its own process (``python -m conformance.distributed.jax_sharding --dtype float32 --out
F.npz``; :func:`run_in_subprocess` sets ``XLA_FLAGS=--xla_force_host_platform_device_count=8``
before JAX is imported, and ``jax_enable_x64`` only for float64: it changes how optax forms its
float32 scalars, so the two dtypes never share a process). Three trajectories on the same
recorded gradients:

* ``unsharded``: ``jax.jit`` of ``update + apply_updates`` on one device;
* ``named_sharding``: the same function jitted with ``in_shardings``/``out_shardings`` over a
  ``(4, 2)`` mesh: ``w`` (16x4) split over both axes, ``b`` (8) over the flattened mesh, ``c`` (5)
  replicated (JAX refuses a ``NamedSharding`` whose tiling does not divide the dimension: there is
  no uneven sharding to test), the moments sharded like their parameters, the count replicated;
* ``shard_map``: data parallel over 8 devices, as one usually writes it: one jitted
  ``shard_map`` in which device :math:`r` holds the piece :math:`g^{(r)}`
  (:func:`conformance.distributed.problem.piece`), ``psum`` over the mesh, divides by 8 and
  applies the update to replicated parameters;
* ``shard_map_split``: the same reduction in its own jitted ``shard_map``, then the unsharded
  jitted update.

The update is elementwise and the reduction exact (one non-zero term per element), so
``named_sharding`` and ``shard_map_split`` must agree with ``unsharded`` bit for bit.
``shard_map`` need not, and does not (jax 0.10.2, XLA:CPU): XLA contracts
:math:`v \leftarrow \beta_2 v + (1-\beta_2) g^2` into a fused multiply-add, and *which* product it
leaves unrounded depends on the fused computation: ``fma(1-b2, g*g, b2*v)`` in the unsharded
update, ``fma(b2, v, (1-b2)*g*g)`` once the division by 8 is fused in front of it (checked with
exact rationals in ``tests/conformance/test_distributed_jax.py``). The difference is one ulp of
:math:`v` in a few elements, well inside the bound; :mod:`.cases` grades every variant against the
reference (profile ``optax``). Planted bug ``psum_not_mean``: both ``shard_map`` versions forget
the division.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adamw_ref import AdamWConfig
from adapters.reference.oracle import round_to
from conformance.distributed import problem

DEVICES = 8
#: shapes whose sharded dims divide the (4, 2) mesh, and one that cannot be sharded
SHAPES: dict[str, tuple[int, ...]] = {"w": (16, 4), "b": (8,), "c": (5,)}
VARIANTS = ("named_sharding", "shard_map", "shard_map_split")
#: whether a variant must equal the unsharded jit bit for bit (module docstring)
BITWISE = {"named_sharding": True, "shard_map": False, "shard_map_split": True}
PLANTS = ("psum_not_mean",)
XLA_FLAG = f"--xla_force_host_platform_device_count={DEVICES}"


def scenario(scenario_id: str) -> problem.DistScenario:
    return problem.get(scenario_id).with_shapes("jax", SHAPES)


def pieces_of(grad: Any, step: int) -> Any:
    """The 8 devices' pieces of ``grad`` at ``step``, stacked (device axis first)."""
    return np.stack([np.asarray(problem.piece(grad, r, DEVICES, step)) for r in range(DEVICES)])


def _optax(cfg: AdamWConfig) -> Any:
    import optax

    return optax.adamw(
        learning_rate=cfg.lr,
        b1=cfg.beta1,
        b2=cfg.beta2,
        eps=cfg.eps,
        eps_root=cfg.eps_root,
        weight_decay=cfg.weight_decay,
    )


def run(scenario_id: str, dtype: str, seed: int, plant: str | None = None) -> dict[str, Any]:
    """The three trajectories (float64 arrays) and what each took, in this process."""
    import jax
    import jax.numpy as jnp
    import optax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    P: Any = PartitionSpec
    lax: Any = jax.lax

    if dtype == "float64":
        jax_config: Any = jax.config
        jax_config.update("jax_enable_x64", True)
    if len(jax.devices()) < DEVICES:
        raise RuntimeError(f"{len(jax.devices())} JAX devices; set XLA_FLAGS={XLA_FLAG} before importing jax")
    sc = scenario(scenario_id)
    cfg = sc.config("optax")
    p0r, raw = sc.inputs(seed)
    p0 = {k: round_to(v, dtype) for k, v in p0r.items()}
    grads = problem.rounded(raw, dtype)
    dt = jnp.dtype(dtype)
    tx: Any = _optax(cfg)

    def upd(p: Any, g: Any, st: Any) -> Any:
        u, st = tx.update(g, st, p)
        return optax.apply_updates(p, u), st

    def host(p: Mapping[str, Any]) -> dict[str, Any]:
        return {k: np.asarray(v, dtype=np.float64) for k, v in p.items()}

    out: dict[str, Any] = {"trajectories": {}, "seconds": {}, "shardings": {}, "nu": {}}

    def nu_w(st: Any) -> Any:
        return np.asarray(st[0].nu["w"], dtype=np.float64)

    # unsharded
    t0 = time.perf_counter()
    f = jax.jit(upd)
    p = {k: jnp.asarray(v, dt) for k, v in p0.items()}
    st = tx.init(p)
    traj, nus = [], []
    for g in grads:
        p, st = f(p, {k: jnp.asarray(v, dt) for k, v in g.items()}, st)
        traj.append(host(p))
        nus.append(nu_w(st))
    out["trajectories"]["unsharded"] = traj
    out["nu"]["unsharded"] = nus
    out["seconds"]["unsharded"] = time.perf_counter() - t0
    # NamedSharding over a (4, 2) mesh
    t0 = time.perf_counter()
    mesh = Mesh(np.array(jax.devices()[:DEVICES]).reshape(4, 2), ("x", "y"))
    specs = {"w": P("x", "y"), "b": P(("x", "y")), "c": P()}
    shard = {k: NamedSharding(mesh, specs[k]) for k in SHAPES}
    rep = NamedSharding(mesh, P())

    def sh_for(path: Any, x: Any) -> Any:
        key = getattr(path[-1], "key", None) if path else None
        return shard[key] if key in shard and getattr(x, "ndim", 0) > 0 else rep

    p = {k: jax.device_put(jnp.asarray(v, dt), shard[k]) for k, v in p0.items()}
    st0 = tx.init(p)
    st_sh = jax.tree_util.tree_map_with_path(sh_for, st0)
    st = jax.device_put(st0, st_sh)
    fs = jax.jit(upd, in_shardings=(shard, shard, st_sh), out_shardings=(shard, st_sh))
    traj = []
    for g in grads:
        p, st = fs(p, {k: jax.device_put(jnp.asarray(v, dt), shard[k]) for k, v in g.items()}, st)
        traj.append(host(p))
    out["trajectories"]["named_sharding"] = traj
    out["seconds"]["named_sharding"] = time.perf_counter() - t0
    out["shardings"]["named_sharding"] = {
        k: [list(s.data.shape) for s in p[k].addressable_shards] for k in SHAPES
    }
    # shard_map: data parallel, psum of the pieces
    t0 = time.perf_counter()
    dmesh = Mesh(np.array(jax.devices()[:DEVICES]), ("d",))
    divide = plant != "psum_not_mean"

    def dp(p: Any, pieces: Any, st: Any) -> Any:
        g = jax.tree_util.tree_map(lambda x: lax.psum(x[0], "d"), pieces)
        if divide:
            g = jax.tree_util.tree_map(lambda x: x / DEVICES, g)
        return upd(p, g, st)

    smap = jax.jit(
        jax.shard_map(dp, mesh=dmesh, in_specs=(P(), P("d"), P()), out_specs=(P(), P()), check_vma=False)
    )
    p = {k: jnp.asarray(v, dt) for k, v in p0.items()}
    st = tx.init(p)
    traj, nus = [], []
    for t, g in enumerate(grads):
        pieces = {k: jnp.asarray(pieces_of(v, t), dt) for k, v in g.items()}
        p, st = smap(p, pieces, st)
        traj.append(host(p))
        nus.append(nu_w(st))
    out["trajectories"]["shard_map"] = traj
    out["nu"]["shard_map"] = nus
    out["seconds"]["shard_map"] = time.perf_counter() - t0
    # shard_map_split: the reduction jitted on its own, then the unsharded update
    t0 = time.perf_counter()

    def reduce(pieces: Any) -> Any:
        g = jax.tree_util.tree_map(lambda x: lax.psum(x[0], "d"), pieces)
        return jax.tree_util.tree_map(lambda x: x / DEVICES, g) if divide else g

    red = jax.jit(jax.shard_map(reduce, mesh=dmesh, in_specs=(P("d"),), out_specs=P(), check_vma=False))
    p = {k: jnp.asarray(v, dt) for k, v in p0.items()}
    st = tx.init(p)
    traj = []
    for t, g in enumerate(grads):
        pieces = {k: jnp.asarray(pieces_of(v, t), dt) for k, v in g.items()}
        p, st = f(p, red(pieces), st)
        traj.append(host(p))
    out["trajectories"]["shard_map_split"] = traj
    out["seconds"]["shard_map_split"] = time.perf_counter() - t0
    out["versions"] = {"jax": jax.__version__, "optax": optax.__version__}
    out["count"] = int(st[0].count)
    return out


def save(result: Mapping[str, Any], path: Path) -> None:
    arrays = {
        f"{name}/{t + 1}/{k}": a
        for name, traj in result["trajectories"].items()
        for t, pt in enumerate(traj)
        for k, a in pt.items()
    }
    for name, nus in result["nu"].items():
        arrays.update({f"nu:{name}/{t + 1}/w": a for t, a in enumerate(nus)})
    meta = {k: v for k, v in result.items() if k not in ("trajectories", "nu")}
    np.savez(path, __meta__=np.array(json.dumps(meta)), **arrays)


def load(path: Path) -> dict[str, Any]:
    z = np.load(path)
    meta: dict[str, Any] = json.loads(str(z["__meta__"]))
    trajs: dict[str, dict[int, dict[str, Any]]] = {}
    for key in z.files:
        if key == "__meta__":
            continue
        name, t, k = key.split("/")
        trajs.setdefault(name, {}).setdefault(int(t), {})[k] = np.asarray(z[key])
    meta["trajectories"] = {n: [d[t] for t in sorted(d)] for n, d in trajs.items() if not n.startswith("nu:")}
    meta["nu"] = {n[3:]: [d[t]["w"] for t in sorted(d)] for n, d in trajs.items() if n.startswith("nu:")}
    return meta


def run_in_subprocess(
    scenario_id: str, dtype: str, seed: int, out: Path, timeout: float, plant: str | None = None
) -> dict[str, Any]:
    """:func:`run` in a fresh process with 8 virtual devices; the result, or ``{"error": ...}``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "XLA_FLAGS": XLA_FLAG, "ADAMW_PARENT_PID": str(os.getpid()), "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-m", "conformance.distributed.jax_sharding", "--scenario", scenario_id]
    cmd += ["--dtype", dtype, "--seed", str(seed), "--out", str(out)] + (["--plant", plant] if plant else [])
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, start_new_session=True
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s: {' '.join(cmd)}"}
    if proc.returncode != 0 or not out.exists():
        return {"error": f"exit status {proc.returncode}: {(proc.stderr or proc.stdout)[-2000:]}"}
    return load(out)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m conformance.distributed.jax_sharding")
    ap.add_argument("--scenario", default="dist_basic", choices=sorted(problem.BY_ID))
    ap.add_argument("--dtype", default="float32", choices=problem.DTYPES)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plant", default=None, choices=PLANTS)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    if XLA_FLAG not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + XLA_FLAG).strip()
    from conformance import lifeline

    lifeline.watch_parent()
    save(run(a.scenario, a.dtype, a.seed, a.plant), a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
