r"""``adamw-conformance bench``: the step time of every installed AdamW against the memory roofline.

For each implementation, dtype and size :math:`N` (parameters, one tensor) it measures the time of
one optimizer step and compares it with the **memory roofline measured in the same process at the
same size**: a streaming kernel (numpy's in-place ``add``, and with numba a kernel with AdamW's
traffic, reading 4 arrays and writing 3 of them in place; the faster counts) gives the bandwidth
:math:`B`, and an AdamW step that moves :math:`b` bytes per
parameter cannot take less than :math:`bN/B`. AdamW reads :math:`\theta, g, m, v` and writes
:math:`\theta, m, v`: 7 arrays, :math:`b = 7s` for elements of :math:`s` bytes (28 B in float32,
56 B in float64; AMSGrad adds :math:`v_{max}`, 2 more). The roofline fraction is
:math:`(bN/B)/t`, 1 at the roofline.

What is timed (the framework's own step, no conversion to or from numpy):

* ``oracle-numba``, ``oracle-numpy``: :class:`adapters.reference.oracle.RefStepper` ``.step`` with
  gradients in the working dtype (its validation and the spec's scalar formation included);
  ``oracle-spec``: the same with ``backend="spec"`` (:func:`adamw_ref.step` on numpy scalars over
  tuples: the oracle as it was before the array paths), up to :math:`10^6`;
* ``spec``: :func:`adamw_ref.step` in pure Python (binary64, or exact binary32 emulation), small
  sizes only;
* ``torch-forloop``, ``torch-foreach``, ``torch-fused``: ``torch.optim.AdamW(...).step()`` with the
  gradient set once (``-cuda`` variants on a GPU when CUDA is present);
* ``optax``: ``optax.adamw`` update and ``apply_updates`` under one ``jax.jit`` with the buffers
  donated;
* ``keras-tensorflow``, ``keras-jax``, ``keras-torch``: Keras 3's ``AdamW`` (``apply`` inside
  ``tf.function``; ``stateless_apply`` under ``jax.jit``; eager ``apply`` on torch), one
  subprocess per backend;
* ``mlx``: ``mlx.optimizers.AdamW.apply_gradients`` and ``mx.eval``.

Every implementation group runs in its own subprocess (imports never meet), with ``--threads``
threads (default 1: the oracle and the roofline kernel are single-threaded, so one thread
everywhere compares like with like). The roofline is re-measured next to each sample, so a
machine shared with other work loads both alike; the minimum over ``--repeat`` samples is kept.

    adamw-conformance bench [--sizes 1e4,1e5,1e6,1e7,1e8] [--impl oracle,torch] [--dtypes float32]
                            [--repeat 5] [--threads 1] [--json FILE] [--plot FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

PROG = "adamw-conformance bench"

#: Implementation -> (subprocess group, dtypes it runs, device).
IMPLEMENTATIONS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "oracle-numba": ("oracle", ("float32", "float64"), "cpu"),
    "oracle-numpy": ("oracle", ("float32", "float64"), "cpu"),
    "oracle-spec": ("oracle", ("float32", "float64"), "cpu"),
    "spec": ("oracle", ("float32", "float64"), "cpu"),
    "torch-forloop": ("torch", ("float32", "float64"), "cpu"),
    "torch-foreach": ("torch", ("float32", "float64"), "cpu"),
    "torch-fused": ("torch", ("float32", "float64"), "cpu"),
    "torch-foreach-cuda": ("torch-cuda", ("float32", "float64"), "cuda"),
    "torch-fused-cuda": ("torch-cuda", ("float32", "float64"), "cuda"),
    "optax": ("optax", ("float32", "float64"), "cpu"),
    "keras-tensorflow": ("keras-tensorflow", ("float32", "float64"), "cpu"),
    "keras-jax": ("keras-jax", ("float32", "float64"), "cpu"),
    "keras-torch": ("keras-torch", ("float32", "float64"), "cpu"),
    "mlx": ("mlx", ("float32",), "cpu"),
}

#: Default dtypes: the oracle in both, the frameworks in float32 (what they train in).
DEFAULT_DTYPES: dict[str, tuple[str, ...]] = {
    "oracle-numba": ("float32", "float64"),
    "oracle-numpy": ("float32", "float64"),
    "oracle-spec": ("float32", "float64"),
    "spec": ("float32", "float64"),
}

#: The module each group needs (the group is skipped when it is not installed).
NEEDS: dict[str, tuple[str, ...]] = {
    "oracle": ("numpy",),
    "torch": ("torch",),
    "torch-cuda": ("torch",),
    "optax": ("optax", "jax"),
    "keras-tensorflow": ("keras", "tensorflow"),
    "keras-jax": ("keras", "jax"),
    "keras-torch": ("keras", "torch"),
    "mlx": ("mlx",),
}

DEFAULT_SIZES = (10**4, 10**5, 10**6, 10**7, 10**8)
SPEC_MAX = 10**5  # the pure-Python specification: ~1e6 element-steps/s
ORACLE_SPEC_MAX = 10**6  # RefStepper(backend="spec"), the oracle before the array paths: ~4e6/s
ARRAYS_PLAIN = 7  # read p, g, m, v; write p, m, v
LR, WD = 1e-3, 1e-2

#: Peak memory of a run, in parameter-sized arrays (state, gradient, temporaries, copies).
FOOTPRINT = {"oracle": 10, "torch": 10, "optax": 12, "keras": 14, "mlx": 12, "spec": 60}


def bytes_per_param(dtype: str, amsgrad: bool = False) -> int:
    """Bytes an AdamW step moves per parameter: 7 arrays (+2 with AMSGrad) of the dtype."""
    return (ARRAYS_PLAIN + (2 if amsgrad else 0)) * np.dtype(dtype).itemsize


# ---------------------------------------------------------------------------------- results
@dataclass
class Result:
    impl: str
    dtype: str
    size: int
    device: str = "cpu"
    step_s: float | None = None  # minimum over samples
    step_median_s: float | None = None
    steps_per_sample: int = 0
    samples: int = 0
    roofline_gbs: float | None = None  # the streaming kernel's bandwidth, same process, same size
    roofline_kernel: str = ""
    gbs: float | None = None  # bytes_per_param * size / step_s
    fraction: float | None = None  # gbs / roofline_gbs
    setup_s: float | None = None  # construction and the first (compiling) step
    skipped: str | None = None
    measured: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------- the roofline
class Roofline:
    """Streaming kernels at one size and dtype, each moving whole arrays with no hidden traffic
    (every write goes to an array the same pass has just read, so no write-allocate reads):
    numpy's in-place ``add`` (read 2 arrays, write 1: 3 arrays moved) and, with numba, a kernel
    shaped like AdamW's traffic, ``a += d; b += d; c += d`` (read 4, write 3: 7 arrays).
    :meth:`sample` times each once; :meth:`bandwidth` is the faster one's bytes per second."""

    def __init__(self, n: int, dtype: str, device: str = "cpu") -> None:
        self.n, self.dtype, self.device = n, dtype, device
        self.best: dict[str, float] = {}
        self.arrays_moved: dict[str, int] = {}
        if device == "cuda":
            import torch

            t = getattr(torch, dtype)
            self.t = [torch.ones(n, dtype=t, device="cuda") for _ in range(2)]
            self.kernels: dict[str, Callable[[], None]] = {"torch.add_ (in place)": self._cuda_add}
            self.arrays_moved["torch.add_ (in place)"] = 3
            return
        rng = np.random.default_rng(0)
        self.a, self.b, self.c, self.d = (rng.standard_normal(n).astype(dtype) for _ in range(4))
        self.d *= np.dtype(dtype).type(1e-30)  # the sums barely move: no overflow, no subnormals
        self.kernels = {"numpy.add (in place)": lambda: np.add(self.a, self.d, out=self.a)}
        self.arrays_moved["numpy.add (in place)"] = 3
        stream = _numba_stream()
        if stream is not None:
            stream(self.a, self.b, self.c, self.d)
            self.kernels["numba stream (read 4, write 3)"] = lambda: stream(self.a, self.b, self.c, self.d)
            self.arrays_moved["numba stream (read 4, write 3)"] = 7

    def _cuda_add(self) -> None:
        import torch

        self.t[0].add_(self.t[1])
        torch.cuda.synchronize()

    def sample(self, inner: int) -> None:
        for name, k in self.kernels.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                k()
            dt = (time.perf_counter() - t0) / inner
            self.best[name] = min(self.best.get(name, math.inf), dt)

    def rates(self) -> dict[str, float]:
        """Bytes per second of each kernel (its best sample)."""
        itemsize = np.dtype(self.dtype).itemsize
        return {k: self.arrays_moved[k] * self.n * itemsize / t for k, t in self.best.items()}

    def bandwidth(self) -> tuple[float, str]:
        """Bytes per second of the fastest kernel, and its name."""
        rates = self.rates()
        name = max(rates, key=lambda k: rates[k])
        return rates[name], name


_STREAM: Any = None


def _numba_stream() -> Any:
    global _STREAM
    if _STREAM is None:
        from adapters.reference import fused

        numba = fused.numba_module() if not fused.numba_disabled() else None
        _STREAM = (
            False if numba is None else numba.njit(fastmath=False, error_model="numpy", cache=True)(stream)
        )
    return _STREAM or None


def stream(a: Any, b: Any, c: Any, d: Any) -> None:
    """``a += d; b += d; c += d`` element by element: AdamW's memory traffic without its
    arithmetic (compiled by numba for the roofline)."""
    for i in range(a.shape[0]):
        x = d[i]
        a[i] = a[i] + x
        b[i] = b[i] + x
        c[i] = c[i] + x


# ------------------------------------------------------------------------- implementations
Step = Callable[[], None]


def _rng_arrays(n: int, dtype: str) -> tuple[Any, Any]:
    rng = np.random.default_rng(1)
    p = rng.uniform(-1, 1, n).astype(dtype)
    g = (rng.standard_normal(n) * 1e-2).astype(dtype)
    return p, g


def _make_oracle(impl: str, n: int, dtype: str) -> tuple[Step, str]:
    from adamw_ref import AdamWConfig
    from adapters.reference.oracle import RefStepper, arithmetic

    cfg = AdamWConfig(lr=LR, weight_decay=WD)
    p, g = _rng_arrays(n, dtype)
    if impl == "spec":
        from adamw_ref import init, step
        from adamw_ref.arithmetic import arithmetic_for

        A = arithmetic_for(dtype)
        params: Any = {"w": tuple(A.vec(p.tolist()))}
        grads = {"w": g.tolist()}
        box = [params, init(params, cfg, A)]

        def spec_step() -> None:
            box[0], box[1] = step(box[0], grads, box[1], cfg, A)

        return spec_step, "adamw_ref.step (pure Python), one parameter of N elements"
    backend = impl.split("-", 1)[1]
    r = RefStepper(cfg, {"w": p}, arithmetic(dtype), backend=backend)
    if r.backend != backend:
        raise RuntimeError(f"backend {backend} unavailable (got {r.backend})")
    grads_w = {"w": g}
    return (lambda: r.step(grads_w)), f"RefStepper(backend={backend!r}).step, gradient in {dtype}"


def _make_torch(impl: str, n: int, dtype: str) -> tuple[Step, str]:
    import torch

    device = "cuda" if impl.endswith("-cuda") else "cpu"
    kind = impl.removeprefix("torch-").removesuffix("-cuda")
    p0, g0 = _rng_arrays(n, dtype)
    p = torch.nn.Parameter(torch.from_numpy(p0).to(device))
    p.grad = torch.from_numpy(g0).to(device)
    flags: dict[str, Any] = {
        "forloop": {"foreach": False},
        "foreach": {"foreach": True},
        "fused": {"fused": True},
    }[kind]
    opt = torch.optim.AdamW([p], lr=LR, weight_decay=WD, **flags)
    if device == "cuda":

        def cuda_step() -> None:
            opt.step()
            torch.cuda.synchronize()

        return cuda_step, f"torch.optim.AdamW({flags}).step() on CUDA, synchronised"
    return opt.step, f"torch.optim.AdamW({flags}).step(), gradient set once"


def _make_optax(impl: str, n: int, dtype: str) -> tuple[Step, str]:
    import jax
    import optax

    p0, g0 = _rng_arrays(n, dtype)
    tx = optax.adamw(LR, weight_decay=WD)
    params = {"w": jax.device_put(p0)}
    grads = {"w": jax.device_put(g0)}
    state = tx.init(params)

    def update(params: Any, state: Any, grads: Any) -> Any:
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    f = jax.jit(update, donate_argnums=(0, 1))
    box = [params, state]

    def step() -> None:
        box[0], box[1] = f(box[0], box[1], grads)
        box[0]["w"].block_until_ready()

    return step, "optax.adamw update + apply_updates under jax.jit (donated), block_until_ready"


def _make_keras(impl: str, n: int, dtype: str) -> tuple[Step, str]:
    import keras

    backend = keras.backend.backend()
    p0, g0 = _rng_arrays(n, dtype)
    var = keras.Variable(p0, dtype=dtype)
    opt = keras.optimizers.AdamW(learning_rate=LR, weight_decay=WD)
    opt.build([var])
    if backend == "tensorflow":
        import tensorflow as tf

        g = tf.constant(g0)
        f = tf.function(lambda: opt.apply([g], [var]))

        def tf_step() -> None:
            f()  # eager call of a tf.function: returns when the step is done on the CPU

        return tf_step, "keras AdamW.apply inside tf.function"
    if backend == "jax":
        import jax

        g = jax.device_put(g0)
        f = jax.jit(opt.stateless_apply, donate_argnums=(0, 2))
        box = [[v.value for v in opt.variables], [var.value]]

        def jax_step() -> None:
            box[1], box[0] = f(box[0], [g], box[1])
            box[1][0].block_until_ready()

        return jax_step, "keras AdamW.stateless_apply under jax.jit (donated)"
    import torch

    gt = torch.from_numpy(g0)

    def torch_step() -> None:
        opt.apply([gt], [var])

    return torch_step, "keras AdamW.apply, eager (torch backend)"


def _make_mlx(impl: str, n: int, dtype: str) -> tuple[Step, str]:
    import mlx.core as mx
    import mlx.optimizers as optim

    p0, g0 = _rng_arrays(n, dtype)
    opt = optim.AdamW(learning_rate=LR, weight_decay=WD)
    box = [{"w": mx.array(p0)}]
    grads = {"w": mx.array(g0)}
    opt.init(box[0])

    def step() -> None:
        box[0] = opt.apply_gradients(grads, box[0])
        mx.eval(box[0], opt.state)

    return step, "mlx.optimizers.AdamW.apply_gradients + mx.eval"


MAKERS: dict[str, Callable[[str, int, str], tuple[Step, str]]] = {
    "oracle": _make_oracle,
    "torch": _make_torch,
    "torch-cuda": _make_torch,
    "optax": _make_optax,
    "keras-tensorflow": _make_keras,
    "keras-jax": _make_keras,
    "keras-torch": _make_keras,
    "mlx": _make_mlx,
}


# ------------------------------------------------------------------------------ measurement
def _available_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def _footprint(impl: str) -> int:
    group = IMPLEMENTATIONS[impl][0]
    if impl in ("spec", "oracle-spec"):
        return FOOTPRINT["spec"]
    return FOOTPRINT.get(group.split("-")[0], 12)


def measure(
    impl: str,
    n: int,
    dtype: str,
    repeat: int,
    min_sample_s: float,
    budget_s: float,
) -> Result:
    """One implementation at one size: warm up (compilation), then ``repeat`` samples of
    ``inner`` steps each, the roofline kernels timed beside each sample."""
    group, _, device = IMPLEMENTATIONS[impl]
    res = Result(impl=impl, dtype=dtype, size=n, device=device)
    need = _footprint(impl) * n * np.dtype(dtype).itemsize
    if device == "cpu" and need > 0.6 * _available_bytes():
        res.skipped = f"needs ~{need / 2**30:.1f} GiB, more than 60% of the memory available"
        return res
    if impl == "spec" and n > SPEC_MAX:
        res.skipped = f"the pure-Python specification runs sizes up to {SPEC_MAX} only"
        return res
    if impl == "oracle-spec" and n > ORACLE_SPEC_MAX:
        res.skipped = f"the specification over tuples runs sizes up to {ORACLE_SPEC_MAX} only"
        return res
    t0 = time.perf_counter()
    try:
        step, res.measured = MAKERS[group](impl, n, dtype)
        roof = Roofline(n, dtype, device)
        step()  # compile / allocate
        t1 = time.perf_counter()
        step()
        first = time.perf_counter() - t1
    except Exception as exc:  # an implementation that cannot run here is a result, not a crash
        res.skipped = f"{type(exc).__name__}: {exc}"[:300]
        return res
    res.setup_s = time.perf_counter() - t0
    inner = max(1, min(10_000, math.ceil(min_sample_s / max(first, 1e-7))))
    samples: list[float] = []
    deadline = time.perf_counter() + budget_s
    for i in range(repeat):
        roof.sample(max(1, inner))
        ts = time.perf_counter()
        for _ in range(inner):
            step()
        samples.append((time.perf_counter() - ts) / inner)
        if time.perf_counter() > deadline and i >= 1:
            break
    roof.sample(max(1, inner))
    res.samples, res.steps_per_sample = len(samples), inner
    res.step_s = min(samples)
    res.step_median_s = float(np.median(samples))
    bw, res.roofline_kernel = roof.bandwidth()
    res.roofline_gbs = bw / 1e9
    res.gbs = bytes_per_param(dtype) * n / res.step_s / 1e9
    res.fraction = res.gbs / res.roofline_gbs
    res.extra = {f"{k} GB/s": round(v / 1e9, 3) for k, v in roof.rates().items()}
    return res


def _set_threads(threads: int) -> None:
    """Thread counts for every framework, before it is imported."""
    from conformance.threads import thread_env

    os.environ.update(thread_env(threads, os.environ, force=True))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _configure(group: str, threads: int, x64: bool) -> None:
    if group.startswith("keras-"):
        os.environ["KERAS_BACKEND"] = group.removeprefix("keras-")
    if x64 and (group in ("optax", "keras-jax")):
        import jax

        enable: Any = jax.config.update  # untyped in jax
        enable("jax_enable_x64", True)
    if group in ("torch", "torch-cuda", "keras-torch"):
        import torch

        torch.set_num_threads(threads)
    if group == "keras-tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def run_worker(ns: argparse.Namespace) -> int:
    """One group in this process: every (impl, dtype, size) of the group, one JSON line each."""
    group = ns.worker
    _set_threads(ns.threads)
    impls = [i for i in ns.impl_list if IMPLEMENTATIONS[i][0] == group]
    x64 = any("float64" in _dtypes_for(i, ns.dtype_list) for i in impls)
    _configure(group, ns.threads, x64)
    for impl in impls:
        slow_from: int | None = None
        for dtype in _dtypes_for(impl, ns.dtype_list):
            for n in ns.size_list:
                if slow_from is not None and n > slow_from:
                    res = Result(impl=impl, dtype=dtype, size=n, device=IMPLEMENTATIONS[impl][2])
                    res.skipped = f"a smaller size already took more than {ns.max_step_s} s per step"
                else:
                    res = measure(impl, n, dtype, ns.repeat, ns.min_sample_s, ns.budget_s)
                    if res.step_s is not None and res.step_s * 10 > ns.max_step_s:
                        slow_from = n
                print(json.dumps(asdict(res)), flush=True)
            slow_from = None
    return 0


def _dtypes_for(impl: str, dtypes: Sequence[str] | None) -> tuple[str, ...]:
    supported = IMPLEMENTATIONS[impl][1]
    want = tuple(dtypes) if dtypes else DEFAULT_DTYPES.get(impl, ("float32",))
    return tuple(d for d in want if d in supported)


def _installed(group: str) -> str | None:
    import importlib.util

    for mod in NEEDS[group]:
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not installed"
    if group == "torch-cuda":
        try:
            import torch

            if not torch.cuda.is_available():
                return "no CUDA device"
        except Exception as exc:
            return f"torch: {exc}"
    return None


# ------------------------------------------------------------------------------ machine, report
def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "load_average_at_start": None if load is None else [round(x, 2) for x in load],
    }


def _versions(groups: Sequence[str]) -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("numpy", "numba", "torch", "jax", "optax", "keras", "tensorflow", "mlx"):
        try:
            out[name] = metadata.version(name if name != "tensorflow" else "tensorflow-cpu")
        except metadata.PackageNotFoundError:
            try:
                out[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
    return out


def table(results: Sequence[dict[str, Any]]) -> str:
    head = (
        f"{'implementation':<20} {'dtype':<8} {'N':>10} {'time/step':>12} {'GB/s':>8} "
        f"{'roofline':>9} {'fraction':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        name = r["impl"]
        if r.get("skipped"):
            size = f"{r['size']:.0e}" if r["size"] else "-"
            lines.append(f"{name:<20} {r['dtype']:<8} {size:>10} skipped: {r['skipped'][:70]}")
            continue
        lines.append(
            f"{name:<20} {r['dtype']:<8} {r['size']:>10.0e} {_fmt_time(r['step_s']):>12} "
            f"{r['gbs']:>8.2f} {r['roofline_gbs']:>9.2f} {r['fraction']:>9.3f}"
        )
    return "\n".join(lines)


def _fmt_time(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def plot(results: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """Time per step against N, log-log, one panel per dtype, with the roofline (the median over
    the run's measurements of the streaming bandwidth at each size)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if r.get("step_s")]
    dtypes = sorted({r["dtype"] for r in ok}, key=lambda d: -np.dtype(d).itemsize)
    if not dtypes:
        return
    fig, axes = plt.subplots(1, len(dtypes), figsize=(6.5 * len(dtypes), 5.6), squeeze=False)
    names = [i for i in IMPLEMENTATIONS if any(r["impl"] == i for r in ok)]
    colours = {name: plt.get_cmap("tab20")(i % 20) for i, name in enumerate(names)}
    handles: dict[str, Any] = {}
    for ax, dtype in zip(axes[0], dtypes):
        rows = [r for r in ok if r["dtype"] == dtype]
        for impl in names:
            pts = sorted((r["size"], r["step_s"]) for r in rows if r["impl"] == impl)
            if not pts:
                continue
            style = "-o" if impl.startswith("oracle") else ("--s" if impl == "spec" else "-.^")
            (line,) = ax.plot(
                [p[0] for p in pts], [p[1] for p in pts], style, color=colours[impl], label=impl, markersize=4
            )
            handles[impl] = line
        sizes = sorted({r["size"] for r in rows if r["device"] == "cpu"})
        roof = [
            bytes_per_param(dtype)
            * n
            / (
                float(np.median([r["roofline_gbs"] for r in rows if r["size"] == n and r["device"] == "cpu"]))
                * 1e9
            )
            for n in sizes
        ]
        if sizes:
            (line,) = ax.plot(sizes, roof, "k-", linewidth=2.5, alpha=0.5, label="memory roofline (7 arrays)")
            handles["memory roofline (7 arrays)"] = line
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("parameters N")
        ax.set_ylabel("seconds per step")
        ax.set_title(f"{dtype}: {bytes_per_param(dtype)} bytes/parameter/step")
        ax.grid(True, which="both", alpha=0.3)
    fig.legend(
        list(handles.values()), list(handles), loc="lower center", ncol=min(6, len(handles)), fontsize=8
    )
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------- the verb
def _sizes(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        part = part.strip()
        if part:
            v = float(part)
            if not (v >= 1 and v == int(v)):
                raise argparse.ArgumentTypeError(f"size {part!r}: a positive integer (1e6 is fine)")
            out.append(int(v))
    if not out:
        raise argparse.ArgumentTypeError("no size given")
    return sorted(set(out))


def _impls(text: str) -> list[str]:
    out: list[str] = []
    for part in text.split(","):
        part = part.strip()
        hits = [
            i
            for i in IMPLEMENTATIONS
            if i == part or i.startswith(part + "-") or IMPLEMENTATIONS[i][0] == part
        ]
        if not hits:
            raise argparse.ArgumentTypeError(
                f"implementation {part!r}: expected one of {sorted(IMPLEMENTATIONS)}"
            )
        out += [h for h in hits if h not in out]
    return out


def _dtypes(text: str) -> list[str]:
    out = [d.strip() for d in text.split(",") if d.strip()]
    bad = [d for d in out if d not in ("float32", "float64")]
    if bad or not out:
        raise argparse.ArgumentTypeError(f"dtypes {text!r}: float32 and/or float64")
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=PROG,
        description="Step time of every installed AdamW against the memory roofline measured in the "
        "same run.",
    )
    ap.add_argument(
        "--sizes",
        dest="size_list",
        type=_sizes,
        default=list(DEFAULT_SIZES),
        metavar="N,N,...",
        help="parameter counts (default 1e4,1e5,1e6,1e7,1e8; capped by the memory available)",
    )
    ap.add_argument(
        "--impl",
        dest="impl_list",
        type=_impls,
        default=None,
        metavar="NAME,...",
        help="implementations or groups (oracle, torch, optax, keras, mlx, ...; default: all installed)",
    )
    ap.add_argument(
        "--dtypes",
        dest="dtype_list",
        type=_dtypes,
        default=None,
        metavar="D,...",
        help="float32 and/or float64 (default: the oracle and spec in both, frameworks in float32)",
    )
    ap.add_argument(
        "--repeat", type=int, default=5, help="samples per measurement; the minimum is kept (default 5)"
    )
    ap.add_argument("--threads", type=int, default=1, help="threads per framework (default 1)")
    ap.add_argument(
        "--min-sample",
        dest="min_sample_s",
        type=float,
        default=0.05,
        metavar="S",
        help="steps per sample are chosen so a sample lasts about S seconds (default 0.05)",
    )
    ap.add_argument(
        "--budget",
        dest="budget_s",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds of samples per measurement before the repeats are cut short (default 30)",
    )
    ap.add_argument(
        "--max-step",
        dest="max_step_s",
        type=float,
        default=20.0,
        metavar="S",
        help="skip larger sizes once a step would take more than S seconds (default 20)",
    )
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per subprocess (default 1800)")
    ap.add_argument(
        "--json", dest="json_path", default=None, metavar="FILE", help="write the results as JSON"
    )
    ap.add_argument(
        "--plot", dest="plot_path", default=None, metavar="FILE", help="write a PNG (time vs N, log-log)"
    )
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return ap


def bench_main(argv: list[str]) -> int:
    """The ``bench`` verb: measure, print the table, write ``--json`` and ``--plot``."""
    ap = build_parser()
    try:
        ns = ap.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int) else 2
    if ns.repeat < 1 or ns.threads < 1:
        print(f"{PROG}: error: --repeat and --threads must be >= 1", file=sys.stderr)
        return 2
    if ns.impl_list is None:
        ns.impl_list = list(IMPLEMENTATIONS)
    if ns.worker:
        return run_worker(ns)
    started = time.perf_counter()
    info = machine()
    results: list[dict[str, Any]] = []
    groups = list(dict.fromkeys(IMPLEMENTATIONS[i][0] for i in ns.impl_list))
    for group in groups:
        impls = [i for i in ns.impl_list if IMPLEMENTATIONS[i][0] == group]
        missing = _installed(group)
        if missing:
            for impl in impls:
                for dtype in _dtypes_for(impl, ns.dtype_list):
                    results.append(
                        asdict(
                            Result(
                                impl=impl,
                                dtype=dtype,
                                size=0,
                                device=IMPLEMENTATIONS[impl][2],
                                skipped=missing,
                            )
                        )
                    )
            if not ns.quiet:
                print(f"{group}: skipped ({missing})", file=sys.stderr, flush=True)
            continue
        results += _run_group(group, impls, ns)
    info["load_average_at_end"] = (
        [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    )
    doc = {
        "benchmark": "bench",
        "what": "seconds per AdamW step (lr=1e-3, wd=1e-2, one parameter tensor of N elements, "
        "no AMSGrad) for each implementation, against the memory roofline measured in the same "
        "process at the same size (fraction = (bytes moved / bandwidth) / step time)",
        "command": "adamw-conformance bench " + " ".join(argv),
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": info,
        "versions": _versions(groups),
        "threads": ns.threads,
        "repeat": ns.repeat,
        "bytes_per_param": {d: bytes_per_param(d) for d in ("float32", "float64")},
        "bytes_per_param_amsgrad": {d: bytes_per_param(d, True) for d in ("float32", "float64")},
        "wall_s": round(time.perf_counter() - started, 1),
        "results": results,
    }
    print(table(results))
    if ns.json_path:
        Path(ns.json_path).write_text(json.dumps(doc, indent=1) + "\n")
    if ns.plot_path:
        plot(
            results,
            Path(ns.plot_path),
            f"AdamW step time vs N on {info['cpu']} ({info['cores']} cores), {ns.threads} thread(s); "
            f"roofline = streaming bandwidth measured in the same run",
        )
    return 0


def _run_group(group: str, impls: Sequence[str], ns: argparse.Namespace) -> list[dict[str, Any]]:
    cmd = [
        sys.executable,
        "-m",
        "conformance.bench",
        "--worker",
        group,
        "--impl",
        ",".join(impls),
        "--sizes",
        ",".join(str(n) for n in ns.size_list),
        "--repeat",
        str(ns.repeat),
        "--threads",
        str(ns.threads),
        "--min-sample",
        str(ns.min_sample_s),
        "--budget",
        str(ns.budget_s),
        "--max-step",
        str(ns.max_step_s),
    ]
    if ns.dtype_list:
        cmd += ["--dtypes", ",".join(ns.dtype_list)]
    if not ns.quiet:
        print(f"{group}: {', '.join(impls)} ...", file=sys.stderr, flush=True)
    out: list[dict[str, Any]] = []
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=ns.timeout, check=False)
        stdout, err, rc = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err, rc = f"timed out after {ns.timeout} s", -1
    for line in stdout.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            out.append(row)
            if not ns.quiet and row.get("step_s"):
                print(
                    f"  {row['impl']:<18} {row['dtype']:<8} N={row['size']:.0e} {_fmt_time(row['step_s'])}"
                    f"  {row['fraction']:.3f} of the roofline",
                    file=sys.stderr,
                    flush=True,
                )
    if rc != 0:
        tail = err.strip().splitlines()[-1:] if err.strip() else [f"exit {rc}"]
        for impl in impls:
            if not any(r["impl"] == impl for r in out):
                for dtype in _dtypes_for(impl, ns.dtype_list):
                    out.append(
                        asdict(
                            Result(
                                impl=impl,
                                dtype=dtype,
                                size=0,
                                device=IMPLEMENTATIONS[impl][2],
                                skipped=tail[0][:300],
                            )
                        )
                    )
    return out


if __name__ == "__main__":
    raise SystemExit(bench_main(sys.argv[1:]))
