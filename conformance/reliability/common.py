"""Shared by the reliability reports: float encodings, value classes, worker processes, files.

Floats cross process boundaries as the hex of their binary64 bit pattern (:func:`bits`), which
keeps signed zeros, infinities and NaN payloads; every framework value here converts to binary64
exactly, so equal bits in binary64 mean equal bits natively.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from conformance.threads import thread_env

MARK = "ADAMW_RELIABILITY_JSON:"
WORKER = "conformance.reliability.worker"

#: environment of every worker: one thread each (CI has 2 cores), quiet TensorFlow
QUIET_ENV = {**thread_env(1, {}), "TF_CPP_MIN_LOG_LEVEL": "3"}


def bits(x: Any) -> list[str]:
    """Row-major hex bit patterns (16 digits) of ``x`` converted to binary64."""
    arr = np.ascontiguousarray(np.asarray(x, dtype=np.float64).reshape(-1))
    return [f"{int(b):016x}" for b in arr.view(np.uint64)]


def from_bits(
    values: Sequence[str], shape: Sequence[int] | None = None
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Inverse of :func:`bits`: a flat array, or of ``shape``."""
    raw = np.array([int(v, 16) for v in values], dtype=np.uint64)
    return raw.view(np.float64).reshape(raw.shape if shape is None else tuple(shape))


def bits_of_float(x: float) -> str:
    return bits([x])[0]


def float_of_bits(b: str) -> float:
    return float(from_bits([b])[0])


def kind(x: float) -> str:
    """``nan``, ``+inf``, ``-inf`` or ``finite``."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "+inf" if x > 0 else "-inf"
    return "finite"


def show(x: float) -> str:
    """A short rendering: ``nan``, ``+inf``, ``-inf`` or ``%.6g``."""
    k = kind(x)
    return f"{x:.6g}" if k == "finite" else k


def one_line(text: str, limit: int = 220) -> str:
    """The first non-empty line of ``text``, at most ``limit`` characters."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def worker_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(QUIET_ENV)
    env.update(extra or {})
    return env


def run_jobs(
    jobs: Sequence[Mapping[str, Any]], *, env: Mapping[str, str] | None = None, timeout: float = 600.0
) -> list[dict[str, Any]]:
    """Run ``jobs`` in worker processes (:mod:`conformance.reliability.worker`); one result each.

    When a worker dies (a signal, an abort inside a framework) or exceeds ``timeout``, the job it
    was running gets ``{"crash": ..., "returncode": rc, "stderr": tail}`` and a new worker takes
    the jobs after it.
    """
    results: list[dict[str, Any]] = []
    pending = list(jobs)
    while pending:
        got, rc, err, timed_out = _one_worker(pending, worker_env(env), timeout)
        results.extend(got)
        if len(got) == len(pending):
            break
        what = "timeout" if timed_out else f"worker exited with status {rc}"
        results.append(
            {
                "crash": what,
                "returncode": rc,
                "stderr": "\n".join(err.strip().splitlines()[-6:]),
            }
        )
        pending = pending[len(got) + 1 :]
    return results


def _one_worker(
    jobs: Sequence[Mapping[str, Any]], env: Mapping[str, str], timeout: float
) -> tuple[list[dict[str, Any]], int, str, bool]:
    proc = subprocess.Popen(
        [sys.executable, "-m", WORKER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env),
    )
    timed_out = False
    try:
        out, err = proc.communicate(json.dumps(list(jobs)), timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        timed_out = True
    got = [json.loads(line[len(MARK) :]) for line in out.splitlines() if line.startswith(MARK)]
    return got, int(proc.returncode or 0), err, timed_out


def write_report(out_dir: Path, stem: str, doc: Mapping[str, Any], markdown: str) -> tuple[Path, Path]:
    """``<stem>.json`` and ``<stem>.md`` in ``out_dir`` (created)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    js.write_text(json.dumps(doc, indent=1, sort_keys=False, allow_nan=False) + "\n")
    md.write_text(markdown if markdown.endswith("\n") else markdown + "\n")
    return js, md


def versions() -> dict[str, str]:
    """Installed versions of the frameworks the reports drive (without importing them)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {"python": sys.version.split()[0]}
    for pkg in ("numpy", "torch", "jax", "optax", "keras", "tensorflow-cpu", "tensorflow", "mlx"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    if "tensorflow-cpu" in out:
        out["tensorflow"] = out.pop("tensorflow-cpu")
    return out


def md_escape(text: str) -> str:
    """``text`` safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_code(text: str) -> str:
    """``text`` (a framework's message) as a code span: nothing in it is read as Markdown (a
    ``[a][b]`` in a message would otherwise be a reference link)."""
    body = md_escape(str(text).replace("`", "'"))
    return f"`{body}`" if body else ""
