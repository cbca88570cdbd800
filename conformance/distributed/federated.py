r"""Federated averaging with local AdamW: the reference's own simulation, and torch's and optax's.

The protocol (FedAvg, McMahan et al. 2017, with AdamW as the client optimizer): the server holds
:math:`\bar\theta_{r}`; in round :math:`r+1` each of :math:`K` clients starts from it, runs
:math:`E` local AdamW steps on its own recorded gradient stream, and the server averages the
clients' parameters, :math:`\bar\theta_{r+1}=\frac1K\sum_k\theta^{(k)}_{r+1}` (summed in client
order, then divided by :math:`K`, in the dtype). What happens to the optimizer state between
rounds is the variant (:data:`VARIANTS`):

* ``local``: each client keeps its own AdamW state (moments and counts) from round to round;
* ``reset``: each client starts every round with a fresh optimizer (zero moments, count 0: the
  bias correction starts over), which is what a client that builds its optimizer inside its
  ``fit``/``train`` function does (Flower's and FedML's examples; see docs/concepts/federated.md);
* ``averaged``: the server averages the moments too (summed in client order, divided by
  :math:`K`) and every client continues from them, its count continuing.

:func:`simulate` is the reference's simulation, written with :func:`adamw_ref.init` and
:func:`adamw_ref.step` themselves in any :class:`adamw_ref.Arithmetic` (binary64 for the expected
trajectory, the dtype's own for ``exact``). :func:`torch_fedavg` and :func:`optax_fedavg` run the
same protocol with ``torch.optim.AdamW`` and ``optax.adamw``, in a subprocess
(``python -m conformance.distributed.federated``). Planted bugs (:data:`PLANTS`):
``moments_not_averaged`` (the ``averaged`` protocol, but the clients keep their own moments) and
``state_reset`` (the ``local`` protocol, but the optimizer is rebuilt every round).

**The bound** (:func:`fed_bounds`): the server's error after round :math:`r` is at most its error
after round :math:`r-1` (every client starts from it; AdamW carries a parameter error with
factor :math:`1-s\le1`), plus the largest local error a client adds in round :math:`r`, plus the
rounding of the average, :math:`u\,(\frac{K-1}{K}\sum_k|\theta^{(k)}|+|\bar\theta|)` (doubled in
float64, where the binary64 reference rounds too). A client's local error is
:func:`conformance.tolerance.step_bounds` (free-running) over its own steps: over all its rounds
at once for ``local`` and ``averaged`` (the moments and the count carry over; at a round's
start the parameter magnitude is the larger of the client's last and the server's), over each
round alone for ``reset``. For ``averaged`` the moment magnitude :math:`M` is driven by the
largest :math:`|g|` over the clients (the averaged moment is a mean of theirs), and averaging the
moments adds :math:`K` roundings to :math:`m` and :math:`v` once every :math:`E` steps: the
count of roundings per step :math:`c` becomes :math:`c\,(1+K/(cE))`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adamw_ref import BINARY64_ARITHMETIC, AdamWConfig, Arithmetic, FloatArithmetic, State, init, step
from adamw_ref.formats import FORMATS
from adapters.reference.oracle import round_to
from conformance import tolerance
from conformance.distributed import problem
from conformance.distributed.problem import F64, Grads

VARIANTS = ("local", "reset", "averaged")
PLANTS = {"moments_not_averaged": "averaged", "state_reset": "local"}
FRAMEWORKS = ("torch", "optax")
PROFILE = {"torch": "torch", "optax": "optax"}

#: (client k, round r, local step e, the client's current parameters) -> its gradients
GradFn = Callable[[int, int, int, Mapping[str, tuple[float, ...]]], Mapping[str, Any]]


@dataclass(frozen=True)
class FedSetup:
    """Clients, rounds and local steps over a distributed scenario's shapes and hyperparameters."""

    scenario: str = "dist_basic"
    clients: int = 3
    rounds: int = 4
    local_steps: int = 3

    @property
    def id(self) -> str:
        return f"fed_{self.scenario.removeprefix('dist_')}-k{self.clients}-e{self.local_steps}-r{self.rounds}"

    def streams(self, seed: int) -> tuple[dict[str, F64], list[list[Grads]]]:
        """The server's initial parameters and each client's own recorded stream (``R*E`` steps,
        a stream of its own per client: heterogeneous drifts)."""
        sc = problem.get(self.scenario)
        p0, _ = sc.inputs(seed)
        n = self.rounds * self.local_steps
        out = []
        for k in range(self.clients):
            client = dataclasses.replace(sc, id=f"{sc.id}_client{k}", steps=n)
            out.append(client.inputs(seed)[1])
        return p0, out


# ------------------------------------------------------------------------ reference simulation
@dataclass
class FedTrace:
    """What a simulation produced: the server after each round; for the binary64 run also each
    client's parameters and state after each of its steps (for the bound)."""

    server: list[dict[str, F64]]
    clients: list[list[tolerance.RefPoint]]  # per client: the point *before* each step, and after
    ends: list[list[dict[str, F64]]]  # per round: each client's parameters at its end


def _arr(x: Sequence[Any], shape: tuple[int, ...]) -> F64:
    return np.array([float(v) for v in x], dtype=np.float64).reshape(shape)


def _mean(A: Arithmetic[Any], xs: Sequence[Sequence[Any]]) -> list[Any]:
    """Elementwise mean of ``xs`` in ``A``: summed in order, then divided by their number."""
    acc = list(xs[0])
    for x in xs[1:]:
        acc = A.add(acc, x)
    return A.div_s(acc, A.lift(len(xs)))


def _point(p: Mapping[str, Any], st: State[Any], shapes: Mapping[str, tuple[int, ...]]) -> tolerance.RefPoint:
    return tolerance.RefPoint(
        {k: _arr(v, shapes[k]) for k, v in p.items()},
        {k: _arr(v, shapes[k]) for k, v in st.m.items()},
        {k: _arr(v, shapes[k]) for k, v in st.v.items()},
        None,
        dict(st.param_steps),
    )


def simulate(
    cfg: AdamWConfig,
    p0: Mapping[str, F64],
    grad_fn: GradFn,
    setup: FedSetup,
    variant: str,
    arith: Arithmetic[Any] = BINARY64_ARITHMETIC,
    *,
    record: bool = False,
) -> FedTrace:
    """The protocol of the module docstring with :func:`adamw_ref.step` in ``arith``."""
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r}: expected one of {VARIANTS}")
    A = arith
    shapes = {k: np.shape(v) for k, v in p0.items()}
    server: dict[str, Any] = {
        k: tuple(A.vec(np.asarray(v, np.float64).ravel().tolist())) for k, v in p0.items()
    }
    states: list[State[Any] | None] = [None] * setup.clients
    trace = FedTrace([], [[] for _ in range(setup.clients)], [])
    for r in range(setup.rounds):
        ends = []
        for k in range(setup.clients):
            st = states[k]
            if st is None or variant == "reset":
                st = init(server, cfg, A)
            p = dict(server)
            for e in range(setup.local_steps):
                if record:
                    trace.clients[k].append(_point(p, st, shapes))
                g = grad_fn(k, r, e, p)
                flat = {
                    n: None if x is None else tuple(np.asarray(x, np.float64).ravel().tolist())
                    for n, x in g.items()
                }
                p, st = step(p, flat, st, cfg, A)
            if record:
                trace.clients[k].append(_point(p, st, shapes))
            states[k] = st
            ends.append(p)
        server = {n: tuple(_mean(A, [c[n] for c in ends])) for n in server}
        if variant == "averaged":
            avg = [s for s in states if s is not None]
            m = {n: tuple(_mean(A, [s.m[n] for s in avg])) for n in server}
            v = {n: tuple(_mean(A, [s.v[n] for s in avg])) for n in server}
            states = [State(s.step, dict(s.param_steps), m, v, s.v_max) for s in avg]
        trace.server.append({n: _arr(x, shapes[n]) for n, x in server.items()})
        trace.ends.append([{n: _arr(c[n], shapes[n]) for n in c} for c in ends])
    return trace


def open_loop(streams: Sequence[Sequence[Grads]], setup: FedSetup, dtype: str) -> GradFn:
    """The recorded streams (rounded to ``dtype``) as a :data:`GradFn`."""
    rounded = [problem.rounded(s, dtype) for s in streams]

    def fn(k: int, r: int, e: int, params: Mapping[str, tuple[float, ...]]) -> Mapping[str, Any]:
        return rounded[k][r * setup.local_steps + e]

    return fn


def reference(
    framework: str, setup: FedSetup, variant: str, dtype: str, seed: int, in_dtype: bool = False
) -> tuple[AdamWConfig, dict[str, F64], FedTrace]:
    """The reference simulation for ``framework``'s profile: binary64 on the dtype-rounded inputs
    (clients recorded, for the bound), or ``in_dtype``."""
    cfg = problem.get(setup.scenario).config(PROFILE[framework])
    p0, streams = setup.streams(seed)
    p0r = {k: round_to(v, dtype) for k, v in p0.items()}
    arith: Arithmetic[Any] = FloatArithmetic(FORMATS[dtype]) if in_dtype else BINARY64_ARITHMETIC
    trace = simulate(cfg, p0r, open_loop(streams, setup, dtype), setup, variant, arith, record=not in_dtype)
    return cfg, p0r, trace


# ---------------------------------------------------------------------------------- the bound
def _max_abs_grads(streams: Sequence[Sequence[Grads]]) -> list[Grads]:
    out: list[Grads] = []
    for t in range(len(streams[0])):
        g: Grads = {}
        for n in streams[0][t]:
            vals = [s[t][n] for s in streams]
            g[n] = (
                None
                if any(v is None for v in vals)
                else np.max(np.abs(np.stack([np.asarray(v) for v in vals])), axis=0)
            )
        out.append(g)
    return out


def fed_bounds(
    cfg: AdamWConfig,
    setup: FedSetup,
    variant: str,
    dtype: str,
    seed: int,
    trace: FedTrace,
    device: str = "cpu",
) -> list[dict[str, F64]]:
    """The server's bound after each round (module docstring), per element."""
    spec = tolerance.spec_for(dtype, device, "ref_vs_impl")
    if variant == "averaged":
        c = spec.c_step * (1 + setup.clients / (spec.c_step * setup.local_steps))
        spec = dataclasses.replace(spec, c_step=c)
    _, streams = setup.streams(seed)
    rounded = [problem.rounded(s, dtype) for s in streams]
    E, R, K = setup.local_steps, setup.rounds, setup.clients
    side = 2.0 if dtype == "float64" else 1.0
    incr: list[list[dict[str, F64]]] = [[] for _ in range(R)]  # per round, per client
    for k in range(K):
        pts = trace.clients[k]  # per round: E+1 points (before each step, after the last)
        grads = _max_abs_grads(rounded) if variant == "averaged" else rounded[k]
        if variant == "reset":
            for r in range(R):
                seg = pts[r * (E + 1) : (r + 1) * (E + 1)]
                b = tolerance.step_bounds(cfg, seg, grads[r * E : (r + 1) * E], spec, "free")
                incr[r].append(b[-1])
            continue
        stitched = [pts[0]]
        for r in range(R):
            seg = pts[r * (E + 1) : (r + 1) * (E + 1)]
            if r > 0:  # the round starts from the server: the larger magnitude of the two
                last, start = stitched[-1], seg[0]
                big = {n: np.maximum(np.abs(a), np.abs(start.params[n])) for n, a in last.params.items()}
                stitched[-1] = dataclasses.replace(last, params=big)
            stitched.extend(seg[1:])
        b = tolerance.step_bounds(cfg, stitched, grads, spec, "free")
        for r in range(R):
            end = b[(r + 1) * E - 1]
            prev = b[r * E - 1] if r > 0 else {n: np.zeros_like(a) for n, a in end.items()}
            incr[r].append({n: end[n] - prev[n] for n in end})
    u = spec.unit_roundoff
    out: list[dict[str, F64]] = []
    acc = {n: np.zeros_like(a) for n, a in trace.server[0].items()}
    for r in range(R):
        ends = trace.ends[r]
        for n in acc:
            local = np.max(np.stack([incr[r][k][n] for k in range(K)]), axis=0)
            total = np.sum(np.stack([np.abs(e[n]) for e in ends]), axis=0)
            avg = side * u * ((K - 1) / K * total + np.abs(trace.server[r][n]))
            acc[n] = acc[n] + local + avg
        out.append({n: a.copy() for n, a in acc.items()})
    return out


# ------------------------------------------------------------------------------ the frameworks
def torch_fedavg(
    cfg: AdamWConfig,
    p0: Mapping[str, F64],
    streams: Sequence[Sequence[Grads]],
    setup: FedSetup,
    variant: str,
    dtype: str,
    plant: str | None = None,
    implementation: str = "foreach",
) -> list[dict[str, F64]]:
    """The protocol with ``torch.optim.AdamW`` clients; the server after each round."""
    import torch

    from conformance.distributed.torch_common import optimizer_kwargs, param_groups

    tdt = getattr(torch, dtype)
    kw = optimizer_kwargs(cfg, implementation)
    rounded = [problem.rounded(s, dtype) for s in streams]
    server = {n: torch.tensor(round_to(a, dtype), dtype=tdt) for n, a in p0.items()}
    clients = [{n: torch.nn.Parameter(t.clone()) for n, t in server.items()} for _ in range(setup.clients)]
    opts: list[Any] = [None] * setup.clients
    rebuild = variant == "reset" or plant == "state_reset"
    out = []
    for r in range(setup.rounds):
        for k, params in enumerate(clients):
            with torch.no_grad():
                for n, p in params.items():
                    p.copy_(server[n])
            if opts[k] is None or rebuild:
                opts[k] = torch.optim.AdamW(param_groups(cfg, params), **kw)
            for e in range(setup.local_steps):
                g = rounded[k][r * setup.local_steps + e]
                for n, p in params.items():
                    gn = g[n]
                    p.grad = None if gn is None else torch.tensor(gn, dtype=tdt)
                opts[k].step()

        def mean(ts: Sequence[Any]) -> Any:
            acc = ts[0].detach().clone()
            for t in ts[1:]:
                acc = acc + t.detach()
            return acc / len(ts)

        server = {n: mean([c[n] for c in clients]) for n in server}
        if variant == "averaged" and plant != "moments_not_averaged":
            for n in server:
                slots = [opts[k].state[clients[k][n]] for k in range(setup.clients)]
                m, v = mean([s["exp_avg"] for s in slots]), mean([s["exp_avg_sq"] for s in slots])
                for s in slots:
                    s["exp_avg"].copy_(m)
                    s["exp_avg_sq"].copy_(v)
        out.append({n: t.to(torch.float64).numpy().copy() for n, t in server.items()})
    return out


def optax_fedavg(
    cfg: AdamWConfig,
    p0: Mapping[str, F64],
    streams: Sequence[Sequence[Grads]],
    setup: FedSetup,
    variant: str,
    dtype: str,
    plant: str | None = None,
) -> list[dict[str, F64]]:
    """The protocol with ``optax.adamw`` clients (jitted step, eager averages)."""
    import jax
    import jax.numpy as jnp
    import optax

    if dtype == "float64":
        jax_config: Any = jax.config
        jax_config.update("jax_enable_x64", True)
    dt = jnp.dtype(dtype)
    tx: Any = optax.adamw(
        learning_rate=cfg.lr,
        b1=cfg.beta1,
        b2=cfg.beta2,
        eps=cfg.eps,
        eps_root=cfg.eps_root,
        weight_decay=cfg.weight_decay,
    )

    @jax.jit
    def upd(p: Any, g: Any, st: Any) -> Any:
        u, st = tx.update(g, st, p)
        return optax.apply_updates(p, u), st

    rounded = [problem.rounded(s, dtype) for s in streams]
    server = {n: jnp.asarray(round_to(a, dtype), dt) for n, a in p0.items()}
    states: list[Any] = [None] * setup.clients
    rebuild = variant == "reset" or plant == "state_reset"

    def mean(ts: Sequence[Any]) -> Any:
        acc = ts[0]
        for t in ts[1:]:
            acc = acc + t
        return acc / jnp.asarray(len(ts), dt)

    out = []
    for r in range(setup.rounds):
        ends = []
        for k in range(setup.clients):
            st = tx.init(server) if (states[k] is None or rebuild) else states[k]
            p = server
            for e in range(setup.local_steps):
                g = rounded[k][r * setup.local_steps + e]
                p, st = upd(p, {n: jnp.asarray(x, dt) for n, x in g.items()}, st)
            states[k] = st
            ends.append(p)
        server = {n: mean([c[n] for c in ends]) for n in server}
        if variant == "averaged" and plant != "moments_not_averaged":
            adam = [s[0] for s in states]
            mu = {n: mean([a.mu[n] for a in adam]) for n in server}
            nu = {n: mean([a.nu[n] for a in adam]) for n in server}
            states = [(a._replace(mu=mu, nu=nu), *s[1:]) for a, s in zip(adam, states, strict=True)]
        out.append({n: np.asarray(x, np.float64) for n, x in server.items()})
    return out


# ------------------------------------------------------------------------------- subprocess
def run_framework(
    framework: str, setup: FedSetup, dtype: str, seed: int, runs: Sequence[tuple[str, str | None]]
) -> dict[str, Any]:
    """Each (variant, plant) of ``runs`` with ``framework``, in this process."""
    cfg = problem.get(setup.scenario).config(PROFILE[framework])
    p0, streams = setup.streams(seed)
    fn = torch_fedavg if framework == "torch" else optax_fedavg
    out: dict[str, Any] = {"servers": {}, "seconds": {}}
    for variant, plant in runs:
        t0 = time.perf_counter()
        key = variant + (f"+{plant}" if plant else "")
        out["servers"][key] = fn(cfg, p0, streams, setup, variant, dtype, plant)
        out["seconds"][key] = time.perf_counter() - t0
    return out


def run_in_subprocess(
    framework: str,
    setup: FedSetup,
    dtype: str,
    seed: int,
    runs: Sequence[tuple[str, str | None]],
    out: Path,
    timeout: float,
) -> dict[str, Any]:
    """:func:`run_framework` in a fresh process; its result, or ``{"error": ...}``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    spec = {"framework": framework, "setup": dataclasses.asdict(setup), "dtype": dtype, "seed": seed}
    spec["runs"] = [list(r) for r in runs]
    job = out.with_suffix(".json")
    job.write_text(json.dumps(spec), encoding="utf-8")
    env = {**os.environ, "ADAMW_PARENT_PID": str(os.getpid()), "JAX_PLATFORMS": "cpu", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "conformance.distributed.federated", str(job), str(out)]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, start_new_session=True
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s: {' '.join(cmd)}"}
    if proc.returncode != 0 or not out.exists():
        return {"error": f"exit status {proc.returncode}: {(proc.stderr or proc.stdout)[-2000:]}"}
    z = np.load(out)
    meta = json.loads(str(z["__meta__"]))
    servers: dict[str, dict[int, dict[str, F64]]] = {}
    for key in z.files:
        if key != "__meta__":
            run, r, n = key.split("/")
            servers.setdefault(run, {}).setdefault(int(r), {})[n] = np.asarray(z[key])
    meta["servers"] = {k: [d[r] for r in sorted(d)] for k, d in servers.items()}
    result: dict[str, Any] = meta
    return result


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m conformance.distributed.federated")
    ap.add_argument("job", type=Path)
    ap.add_argument("out", type=Path)
    a = ap.parse_args(argv)
    from conformance import lifeline

    lifeline.watch_parent()
    spec = json.loads(a.job.read_text(encoding="utf-8"))
    runs = [(v, p) for v, p in spec["runs"]]
    res = run_framework(spec["framework"], FedSetup(**spec["setup"]), spec["dtype"], int(spec["seed"]), runs)
    arrays = {
        f"{k}/{r + 1}/{n}": x
        for k, rounds in res["servers"].items()
        for r, pt in enumerate(rounds)
        for n, x in pt.items()
    }
    meta = {"seconds": res["seconds"]}
    np.savez(a.out, __meta__=np.array(json.dumps(meta)), **arrays)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
