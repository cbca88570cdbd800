"""How many elements the operation-order profiles predict bit for bit, per implementation.

For each implementation of :data:`adamw_ref.oporder.IMPLEMENTATIONS` installed here and each of
its cases (:data:`CASES`: the framework's profile at several ``(lr, weight_decay)``, including a
large decay per step, AMSGrad and ``maximize`` where the framework has them) the framework runs
``--elements`` float32 parameters for ``--steps`` steps on gradients whose magnitudes span twelve
orders (log-uniform on [1e-6, 1e6], random signs). Two predictions are compared with it, element
by element and step by step (params, m, v and AMSGrad's maximum):

* **canonical**: ``adamw_ref.run_trajectory`` with ``BINARY32_ARITHMETIC`` (the specification's
  own order, every operation correctly rounded), under the framework's profile;
* **oporder**: ``adamw_ref.oporder.predict_trajectory`` (the framework's own order).

Reported: the fraction of final parameters and of all per-step values that are bit-identical,
and the largest distance in binary32 ulps. ``--ops`` adds the elementary-operation measurements
(:func:`measure_ops`): each framework operation against the correctly rounded result and against
the model in :mod:`adamw_ref.elementary`. Each framework runs in its own subprocess (Keras reads
its backend once per process)::

    .venv/bin/python benchmarks/bit_exact.py --ops                     # results/bit_exact.json
    .venv/bin/python benchmarks/bit_exact.py --impl torch:fused --elements 64 --steps 200 --out /tmp/b.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from adamw_ref import BINARY32_ARITHMETIC, AdamWConfig, get_profile, run_trajectory  # noqa: E402
from adamw_ref.oporder import IMPLEMENTATIONS, predict_trajectory  # noqa: E402

#: implementation -> (profile, [config changes]) : the cases it runs.
_TORCH = [
    {"lr": 1e-3, "weight_decay": 1e-2},
    {"lr": 1.0, "weight_decay": 0.9, "amsgrad": True},
    {"lr": 3e-4, "weight_decay": 0.1, "beta1": 0.3, "eps": 1e-6, "maximize": True},
]
_KERAS = [
    {"lr": 1e-3, "weight_decay": 4e-3},
    {"lr": 1.0, "weight_decay": 0.9, "amsgrad": True},
    {"lr": 3e-4, "weight_decay": 0.1, "beta1": 0.3, "maximize": True},
]
_OPTAX = [
    {"lr": 1e-3, "weight_decay": 1e-4},
    {"lr": 1.0, "weight_decay": 0.9},
    {"lr": 3e-4, "weight_decay": 0.1, "beta1": 0.3, "maximize": True},
]
_MLX = [
    {"lr": 1e-3, "weight_decay": 1e-2},
    {"lr": 1.0, "weight_decay": 0.9, "bias_correction": True},
    {"lr": 3e-4, "weight_decay": 0.1, "beta1": 0.3, "maximize": True, "bias_correction": True},
]
CASES: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "torch:forloop": ("torch", _TORCH),
    "torch:foreach": ("torch", _TORCH),
    "torch:fused": ("torch", _TORCH),
    "optax:jit": ("optax", _OPTAX),
    "optax:nojit": ("optax", _OPTAX),
    "keras-jax:default": ("keras3", _KERAS),
    "keras-tensorflow:default": ("keras3", _KERAS),
    "keras-torch:default": ("keras3", _KERAS),
    "mlx:default": ("mlx", _MLX),
}
FAMILY = {name: name.split(":")[0] for name in CASES}


def config_for(impl: str, changes: dict[str, Any]) -> AdamWConfig:
    return get_profile(CASES[impl][0]).config.replace(**changes)


def gradients(
    seed: int, steps: int, n: int, distribution: str = "loguniform"
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Initial parameters and a ``(steps, n)`` gradient stream, float32. ``loguniform``:
    magnitudes log-uniform on [1e-6, 1e6], random signs. ``heavy``: a Student-t (3 degrees of
    freedom) body times 10^U(-7, 5), 5 % exact zeros, and a run of one constant gradient
    followed by its sign flip (steps 300-339). ``tiny``: magnitudes log-uniform on
    [1e-46, 1e-3] and parameters down to 1e-42, into the subnormal range (flush to zero)."""
    rng = np.random.default_rng(seed)
    p0 = (rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 1, n)).astype(np.float32)
    if distribution == "loguniform":
        g = 10.0 ** rng.uniform(-6, 6, (steps, n)) * rng.choice([-1.0, 1.0], (steps, n))
    elif distribution == "heavy":
        g = rng.standard_t(3, (steps, n)) * 10.0 ** rng.uniform(-7, 5, (steps, n))
        g[rng.random((steps, n)) < 0.05] = 0.0
        g[300:330] = 2.5e-3
        g[330:340] = -2.5e-3
    elif distribution == "tiny":
        g = 10.0 ** rng.uniform(-46, -3, (steps, n)) * rng.choice([-1.0, 1.0], (steps, n))
        p0 = (p0 * 10.0 ** rng.uniform(-42, 0, n)).astype(np.float32)
    else:
        raise SystemExit(f"unknown distribution {distribution}")
    return p0, g.astype(np.float32)


# ----------------------------------------------------------------------------- framework runs
def run_framework(
    impl: str, cfg: AdamWConfig, p0: np.ndarray[Any, Any], g: np.ndarray[Any, Any]
) -> dict[str, Any]:
    """``{"p", "m", "v"[, "vmax"]}``: ``(steps, n)`` float32 arrays after every step."""
    family, mode = impl.split(":")
    if family == "torch":
        return _run_torch(mode, cfg, p0, g)
    if family == "optax":
        return _run_optax(mode == "jit", cfg, p0, g)
    if family.startswith("keras"):
        return _run_keras(cfg, p0, g)
    if family == "mlx":
        return _run_mlx(cfg, p0, g)
    raise SystemExit(f"unknown implementation {impl}")


def _run_torch(mode: str, cfg: AdamWConfig, p0: Any, g: Any) -> dict[str, Any]:
    import torch

    p = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    flags = {"forloop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}[mode]
    opt = torch.optim.AdamW(
        [p],
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        amsgrad=cfg.amsgrad,
        maximize=cfg.maximize,
        **flags,
    )
    out: dict[str, list[Any]] = {"p": [], "m": [], "v": [], "vmax": []}
    for t in range(g.shape[0]):
        p.grad = torch.from_numpy(g[t].copy())
        opt.step()
        st = opt.state[p]
        out["p"].append(p.detach().numpy().copy())
        out["m"].append(st["exp_avg"].numpy().copy())
        out["v"].append(st["exp_avg_sq"].numpy().copy())
        if cfg.amsgrad:
            out["vmax"].append(st["max_exp_avg_sq"].numpy().copy())
    return {k: np.array(v) for k, v in out.items() if v}


def _run_optax(jit: bool, cfg: AdamWConfig, p0: Any, g: Any) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    import optax

    tx = optax.adamw(
        learning_rate=cfg.lr, b1=cfg.beta1, b2=cfg.beta2, eps=cfg.eps, weight_decay=cfg.weight_decay
    )
    p = jnp.asarray(p0)
    st = tx.init(p)

    def step(p: Any, gr: Any, st: Any) -> Any:
        u, st = tx.update(gr, st, p)
        return optax.apply_updates(p, u), st

    fn = jax.jit(step) if jit else step
    out: dict[str, list[Any]] = {"p": [], "m": [], "v": []}
    for t in range(g.shape[0]):
        gt = -g[t] if cfg.maximize else g[t]
        p, st = fn(p, jnp.asarray(gt), st)
        out["p"].append(np.asarray(p))
        out["m"].append(np.asarray(st[0].mu))
        out["v"].append(np.asarray(st[0].nu))
    return {k: np.array(v) for k, v in out.items()}


def _run_keras(cfg: AdamWConfig, p0: Any, g: Any) -> dict[str, Any]:
    import keras

    var = keras.Variable(p0.copy(), dtype="float32", name="w")
    opt = keras.optimizers.AdamW(
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        beta_1=cfg.beta1,
        beta_2=cfg.beta2,
        epsilon=cfg.eps,
        amsgrad=cfg.amsgrad,
    )
    opt.build([var])
    out: dict[str, list[Any]] = {"p": [], "m": [], "v": [], "vmax": []}
    conv = keras.ops.convert_to_numpy
    for t in range(g.shape[0]):
        gt = -g[t] if cfg.maximize else g[t]
        opt.apply([keras.ops.convert_to_tensor(gt)], [var])
        out["p"].append(conv(var.value).copy())
        out["m"].append(conv(opt._momentums[0].value).copy())
        out["v"].append(conv(opt._velocities[0].value).copy())
        if cfg.amsgrad:
            out["vmax"].append(conv(opt._velocity_hats[0].value).copy())
    return {k: np.array(v) for k, v in out.items() if v}


def _run_mlx(cfg: AdamWConfig, p0: Any, g: Any) -> dict[str, Any]:
    import mlx.core as mx
    import mlx.optimizers as optim

    mx.set_default_device(mx.cpu)
    opt = optim.AdamW(
        learning_rate=cfg.lr,
        betas=[cfg.beta1, cfg.beta2],
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        bias_correction=cfg.bias_correction,
    )
    params = {"w": mx.array(p0)}
    out: dict[str, list[Any]] = {"p": [], "m": [], "v": []}
    for t in range(g.shape[0]):
        gt = -g[t] if cfg.maximize else g[t]
        params = opt.apply_gradients({"w": mx.array(gt)}, params)
        mx.eval(params, opt.state)
        out["p"].append(np.array(params["w"]))
        out["m"].append(np.array(opt.state["w"]["m"]))
        out["v"].append(np.array(opt.state["w"]["v"]))
    return {k: np.array(v) for k, v in out.items()}


# ------------------------------------------------------------------------------- comparisons
def _ordered(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    b = x.astype(np.float32).view(np.int32).astype(np.int64)
    return np.where(b < 0, -(b & 0x7FFFFFFF), b)


def compare(got: dict[str, Any], pred: dict[str, Any]) -> dict[str, Any]:
    """Fractions of bit-identical values (final params; every value of every step) and ulps."""
    out: dict[str, Any] = {}
    same_all = []
    for k in got:
        a, b = got[k], pred[k]
        same = a.view(np.uint32) == b.astype(np.float32).view(np.uint32)
        same_all.append(same.ravel())
        ulp = np.abs(_ordered(a) - _ordered(b))
        out[k] = {
            "exact_all_steps": float(same.mean()),
            "exact_final": float(same[-1].mean()),
            "max_ulp": int(ulp.max()),
        }
    out["exact_final_params"] = out["p"]["exact_final"]
    out["exact_all_values"] = float(np.concatenate(same_all).mean())
    ulp_p = np.abs(_ordered(got["p"][-1]) - _ordered(pred["p"][-1]))
    out["final_params_ulp_percentiles"] = {q: int(np.percentile(ulp_p, q)) for q in (50, 90, 99, 100)}
    return out


def _arrays(traj: Any, amsgrad: bool) -> dict[str, Any]:
    res = {
        "p": np.array([p["w"] for p in traj.params[1:]], dtype=np.float64),
        "m": np.array([s.m["w"] for s in traj.states[1:]], dtype=np.float64),
        "v": np.array([s.v["w"] for s in traj.states[1:]], dtype=np.float64),
    }
    if amsgrad:
        res["vmax"] = np.array([s.v_max["w"] for s in traj.states[1:]], dtype=np.float64)
    return res


def predictions(impl: str, cfg: AdamWConfig, p0: Any, g: Any) -> tuple[dict[str, Any], dict[str, Any], float]:
    grads = [{"w": row.tolist()} for row in g]
    t0 = time.perf_counter()
    op = predict_trajectory(impl, cfg, {"w": p0.tolist()}, grads)
    dt = time.perf_counter() - t0
    canon_cfg = cfg
    canon = run_trajectory({"w": p0.tolist()}, grads, canon_cfg, BINARY32_ARITHMETIC)
    return _arrays(op, cfg.amsgrad), _arrays(canon, cfg.amsgrad), dt


# ------------------------------------------------------------------------------ elementary ops
def _ulps(got: Any, ref: Any) -> dict[str, Any]:
    got = np.asarray(got, dtype=np.float32)
    ref = np.asarray(ref, dtype=np.float32)
    d = np.abs(_ordered(got) - _ordered(ref))
    return {"correctly_rounded": float((d == 0).mean()), "max_ulp": int(d.max())}


def measure_ops(family: str, n: int = 100_000, seed: int = 1) -> dict[str, Any]:
    """Each elementary operation of ``family`` against the correctly rounded result (binary64
    rounded once, exact for + - * / sqrt; a single rounding of the exact a*b+c for FMA) and,
    where the op is not correctly rounded, against its model in :mod:`adamw_ref.elementary`."""
    from adamw_ref import elementary as E

    rng = np.random.default_rng(seed)
    x = ((rng.random(n) * 0.5 + 0.5) * 10.0 ** rng.uniform(-30, 30, n) * rng.choice([-1, 1], n)).astype(
        np.float32
    )
    y = ((rng.random(n) * 0.5 + 0.5) * 10.0 ** rng.uniform(-30, 30, n) * rng.choice([-1, 1], n)).astype(
        np.float32
    )
    z = ((rng.random(n) * 0.5 + 0.5) * 10.0 ** rng.uniform(-12, 12, n)).astype(np.float32)
    X, Y, Z = x.astype(np.float64), y.astype(np.float64), z.astype(np.float64)
    k = np.arange(1, 20001, dtype=np.float32)
    res: dict[str, Any] = {}

    def model(name: str, got: Any, pred: list[float]) -> None:
        res[name]["model_exact"] = float((np.asarray(got, np.float32) == np.asarray(pred, np.float32)).mean())

    if family == "torch":
        import torch

        T = torch.from_numpy
        res["mul"] = _ulps(T(x) * T(y), X * Y)
        res["add"] = _ulps(T(x) + T(y), X + Y)
        res["div"] = _ulps(T(x) / T(y), X / Y)
        res["div_by_python_scalar"] = _ulps(T(x) / 1.0000123456789, X / float(np.float32(1.0000123456789)))
        res["sqrt"] = _ulps(T(z).sqrt(), np.sqrt(Z))
        model("sqrt", T(z).sqrt().numpy(), E.sqrt_mkl_ex(z.tolist()))
        w = 1 - 0.9
        ws = float(np.float32(w))
        m, gg = x / np.float32(1e10), y / np.float32(1e10)
        res["lerp_w<0.5"] = _ulps(T(m).lerp(T(gg), w), m.astype(np.float64) + w * (gg.astype(np.float64) - m))
        model(
            "lerp_w<0.5", T(m).lerp(T(gg), w).numpy(), E.fma_s(ws, E.sub(gg.tolist(), m.tolist()), m.tolist())
        )
        res["lerp_w>=0.5"] = _ulps(
            T(m).lerp(T(gg), 0.7), m.astype(np.float64) + 0.7 * (gg.astype(np.float64) - m)
        )
        d = E.sub(gg.tolist(), m.tolist())
        model(
            "lerp_w>=0.5",
            T(m).lerp(T(gg), 0.7).numpy(),
            E.fma_s(E.f32(float(np.float32(0.7)) - 1.0), d, gg.tolist()),
        )
        c2 = 1 - 0.999
        got = T(z).addcmul(T(x / 1e10), T(y / 1e10), value=c2)
        a1, a2 = (x / np.float32(1e10)).tolist(), (y / np.float32(1e10)).tolist()
        res["addcmul"] = _ulps(got, Z + float(np.float32(c2)) * np.asarray(a1) * np.asarray(a2))
        model("addcmul", got.numpy(), E.fma(E.mul_s(a1, E.f32(c2)), a2, z.tolist()))
        got = T(x).addcdiv(T(y), T(z), value=-1.2345e-3)
        sv = E.f32(-1.2345e-3)
        res["addcdiv"] = _ulps(got, X + sv * Y / Z)
        model("addcdiv", got.numpy(), E.add(x.tolist(), E.div(E.mul_s(y.tolist(), sv), z.tolist())))
        got = torch.pow(torch.tensor(np.float32(0.999)), T(k))
        res["pow_f32_vector"] = _ulps(got, 0.999**0 * float(np.float32(0.999)) ** k.astype(np.float64))
        got0 = np.array(
            [torch.pow(torch.tensor(np.float32(0.999)), torch.tensor(kk)).item() for kk in k[:3000]]
        )
        res["pow_f32_0dim"] = _ulps(got0, float(np.float32(0.999)) ** k[:3000].astype(np.float64))
        model("pow_f32_0dim", got0, [E.powf_glibc(float(np.float32(0.999)), float(kk)) for kk in k[:3000]])
    elif family in ("jax", "optax"):
        import jax.numpy as jnp

        res["mul"] = _ulps(jnp.asarray(x) * jnp.asarray(y), X * Y)
        model("mul", np.asarray(jnp.asarray(x) * jnp.asarray(y)), E.FLUSH_TO_ZERO.mul(x.tolist(), y.tolist()))
        res["div"] = _ulps(jnp.asarray(x) / jnp.asarray(y), X / Y)
        model("div", np.asarray(jnp.asarray(x) / jnp.asarray(y)), E.FLUSH_TO_ZERO.div(x.tolist(), y.tolist()))
        res["sqrt"] = _ulps(jnp.sqrt(jnp.asarray(z)), np.sqrt(Z))
        got = np.asarray(jnp.float32(0.999) ** jnp.asarray(k))
        res["pow"] = _ulps(got, float(np.float32(0.999)) ** k.astype(np.float64))
        model("pow", got, [E.powf_glibc(float(np.float32(0.999)), float(kk)) for kk in k])
    elif family == "tensorflow":
        import tensorflow as tf

        res["mul"] = _ulps((tf.constant(x) * tf.constant(y)).numpy(), X * Y)
        model("mul", (tf.constant(x) * tf.constant(y)).numpy(), E.FLUSH_TO_ZERO.mul(x.tolist(), y.tolist()))
        res["div"] = _ulps((tf.constant(x) / tf.constant(y)).numpy(), X / Y)
        model("div", (tf.constant(x) / tf.constant(y)).numpy(), E.FLUSH_TO_ZERO.div(x.tolist(), y.tolist()))
        res["sqrt"] = _ulps(tf.sqrt(tf.constant(z)).numpy(), np.sqrt(Z))
        got = np.array([tf.pow(tf.constant(np.float32(0.999)), tf.constant(kk)).numpy() for kk in k[:3000]])
        res["pow_0dim"] = _ulps(got, float(np.float32(0.999)) ** k[:3000].astype(np.float64))
        model("pow_0dim", got, [E.powf_glibc(float(np.float32(0.999)), float(kk)) for kk in k[:3000]])
    elif family == "mlx":
        import mlx.core as mx

        mx.set_default_device(mx.cpu)
        res["mul"] = _ulps(np.array(mx.array(x) * mx.array(y)), X * Y)
        res["div"] = _ulps(np.array(mx.array(x) / mx.array(y)), X / Y)
        res["sqrt"] = _ulps(np.array(mx.sqrt(mx.array(z))), np.sqrt(Z))
        got = np.array(mx.rsqrt(mx.array(z)))
        res["rsqrt"] = _ulps(got, 1.0 / np.sqrt(Z))
        model("rsqrt", got, E.div([1.0] * n, E.sqrt(z.tolist())))
        got = np.array(0.999 ** mx.array(k.astype(np.uint64)))
        res["pow"] = _ulps(got, float(np.float32(0.999)) ** k.astype(np.float64))
        model("pow", got, [E.powf_glibc(float(np.float32(0.999)), float(kk)) for kk in k])
    return res


# ------------------------------------------------------------------------------------- driver
def worker(spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    impl = spec["impl"]
    if spec.get("ops"):
        Path(out_path).write_text(json.dumps(measure_ops(spec["ops"])))
        return
    p0, g = gradients(spec["seed"], spec["steps"], spec["elements"], spec.get("distribution", "loguniform"))
    cfg = config_for(impl, spec["changes"])
    res = run_framework(impl, cfg, p0, g)
    np.savez(out_path, **res)


def _subprocess(impl: str, spec: dict[str, Any], out: Path) -> None:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    family = FAMILY.get(impl, impl)
    if family.startswith("keras-"):
        env["KERAS_BACKEND"] = family.split("-", 1)[1]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", f.name, str(out)]
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--impl", default=",".join(CASES), help="comma-separated implementations")
    ap.add_argument("--elements", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=20240613)
    ap.add_argument("--distribution", default="loguniform", choices=("loguniform", "heavy", "tiny"))
    ap.add_argument("--ops", action="store_true", help="also measure the elementary operations")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bit_exact.json"))
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return 0
    started = time.time()
    load0 = os.getloadavg()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for impl in args.impl.split(","):
            if impl not in IMPLEMENTATIONS or impl not in CASES:
                raise SystemExit(f"unknown implementation {impl}; expected one of {list(CASES)}")
            p0, g = gradients(args.seed, args.steps, args.elements, args.distribution)
            cases = []
            for i, changes in enumerate(CASES[impl][1]):
                cfg = config_for(impl, changes)
                out = Path(tmp) / f"{impl.replace(':', '_')}_{i}.npz"
                spec = {
                    "impl": impl,
                    "changes": changes,
                    "seed": args.seed,
                    "steps": args.steps,
                    "elements": args.elements,
                    "distribution": args.distribution,
                }
                try:
                    _subprocess(impl, spec, out)
                except subprocess.CalledProcessError as e:
                    cases.append({"config": changes, "error": e.stderr.decode()[-2000:]})
                    continue
                got = dict(np.load(out))
                op, canon, dt = predictions(impl, cfg, p0, g)
                cases.append(
                    {
                        "config": changes,
                        "profile": CASES[impl][0],
                        "canonical": compare(got, canon),
                        "oporder": compare(got, op),
                        "predict_seconds": round(dt, 2),
                    }
                )
                can, op_ = cases[-1]["canonical"], cases[-1]["oporder"]
                print(
                    f"{impl:26s} {json.dumps(changes):70s} canonical {can['exact_final_params']:.3f}"
                    f" / {can['exact_all_values']:.3f}   oporder {op_['exact_final_params']:.3f}"
                    f" / {op_['exact_all_values']:.3f}",
                    flush=True,
                )
            results[impl] = {"framework": IMPLEMENTATIONS[impl].framework, "cases": cases}
        ops: dict[str, Any] = {}
        if args.ops:
            for fam in ("torch", "jax", "tensorflow", "mlx"):
                out = Path(tmp) / f"ops_{fam}.json"
                _subprocess(fam, {"impl": fam, "ops": fam}, out)
                ops[fam] = json.loads(out.read_text())
    doc = {
        "command": "python benchmarks/bit_exact.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "elements": args.elements,
        "steps": args.steps,
        "seed": args.seed,
        "gradients": args.distribution,
        "gradient_distributions": {
            "loguniform": "magnitudes log-uniform on [1e-6, 1e6], random signs",
            "heavy": "Student-t(3) * 10**U(-7, 5), 5% zeros, a constant run and a sign flip",
            "tiny": "magnitudes log-uniform on [1e-46, 1e-3], params down to 1e-42 (subnormals)",
            "params": "N(0,1) * 10**U(-3, 1)",
        },
        "machine": {
            "platform": platform.platform(),
            "processor": _cpu_name(),
            "python": platform.python_version(),
            "load_average_start": load0,
            "load_average_end": os.getloadavg(),
        },
        "seconds": round(time.time() - started, 1),
        "results": results,
    }
    if ops:
        doc["elementary_ops"] = ops
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    raise SystemExit(main())
