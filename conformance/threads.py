"""Thread counts of framework processes: no more threads than cores.

``adamw-conformance run`` runs ``--jobs`` workers at a time; each framework would otherwise size
its own pool to every core (OpenMP for torch, Eigen for TensorFlow and XLA), so two workers on
two cores run four spinning threads. Each worker gets :math:`\\max(1,\\lfloor
\\text{cores}/\\text{jobs}\\rfloor)` threads unless ``--threads`` says otherwise (measured on the
2-core machine: the torch worker of ``--quick`` 6.5 s -> 3.0 s, the run 21.1 s -> 20.1 s).

Thread counts do not change an elementwise optimizer step (each element is computed by one
thread, in the same operations); they change the summation order of the closed-loop tasks'
matrix products, whose gradients the comparison takes from the implementation itself.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

#: Variables every framework reads at start-up (torch/MKL/OpenBLAS/numba, TensorFlow).
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)
#: XLA's CPU client on one thread (JAX, Keras on JAX); set only for ``threads == 1``.
XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def cores() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def per_worker(jobs: int, ncores: int | None = None) -> int:
    """:math:`\\max(1, \\lfloor\\text{cores}/\\text{jobs}\\rfloor)`."""
    return max(1, (cores() if ncores is None else ncores) // max(1, jobs))


def thread_env(threads: int, environ: Mapping[str, str], *, force: bool = False) -> dict[str, str]:
    """The variables to set in a worker's environment ``environ`` for ``threads`` threads.

    Without ``force`` a variable the user already set is kept (their choice wins over the
    default); with it (an explicit ``--threads``) every variable is set.
    """
    if threads < 1:
        raise ValueError(f"threads={threads!r}: expected an integer >= 1")
    out = {k: str(threads) for k in THREAD_VARS if force or k not in environ}
    flags = environ.get("XLA_FLAGS", "")
    if threads == 1 and "xla_cpu_multi_thread_eigen" not in flags:
        out["XLA_FLAGS"] = f"{flags} {XLA_ONE_THREAD}".strip()
    return out


def threads_info() -> dict[str, Any]:
    """The thread counts this process runs with: the environment and each loaded framework."""
    info: dict[str, Any] = {k: os.environ[k] for k in THREAD_VARS if k in os.environ}
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch"] = int(torch.get_num_threads())
    return info
