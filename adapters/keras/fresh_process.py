"""Run Keras adapter jobs in a fresh process with a chosen ``KERAS_BACKEND``.

Keras fixes its backend per process, so a caller that needs several backends (tests, the
conformance suite) sends each backend's jobs to ``python -m adapters.keras.fresh_process`` and reads
JSON back. Floats travel as ``float.hex`` strings (bit-exact). A job is a dict:

* ``{"kind": "defaults"}`` -> ``{"config": native_defaults().to_json()}``;
* ``{"kind": "run", "config": {...}, "dtype": "float32", "params": {name: {"shape": [...],
  "values": [hex, ...]}}, "grads": [{name: [hex, ...] | null}, ...], "save_at": k | null,
  "device": "cpu"}`` -> ``{"params": [{name: [hex]}] (after every step), "state": {...}}``, and with
  ``save_at`` also ``"resumed"``: the parameters after every later step of a fresh optimizer that
  loaded the native state saved after step ``k``;
* ``{"kind": "teacher", "config", "dtype", "params", "state": {"step": k, "m": {name: [hex]},
  "v": {...}}, "grads": [one step]}`` -> ``{"params": ...}`` after ``set_state(params, state)`` and
  one step (teacher forcing);
* ``{"kind": "other_backend", "backend": name}`` -> the other backend's ``native_defaults()``
  (FrameworkUnavailable once this process imported keras);
* any error -> ``{"error": type name, "knob": ..., "message": ...}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adamw_ref import AdamWConfig

MARKER = "ADAMW_KERAS_JSON:"


def encode(arr: Any) -> list[str]:
    """Flat ``float.hex`` strings of an array (row-major)."""
    return [float(x).hex() for x in np.asarray(arr, dtype=np.float64).reshape(-1)]


def decode(values: Sequence[str], shape: Sequence[int]) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.array([float.fromhex(s) for s in values], dtype=np.float64).reshape(tuple(shape))


def run_jobs(backend: str, jobs: list[dict[str, Any]], timeout: float = 600.0) -> list[Any]:
    """Run ``jobs`` in a new Python process with ``KERAS_BACKEND=backend``; one result per job."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-m", "adapters.keras.fresh_process", backend],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith(MARKER):
            out: list[Any] = json.loads(line[len(MARKER) :])
            return out
    raise RuntimeError(f"keras {backend} worker failed (rc={proc.returncode}):\n{proc.stderr[-4000:]}")


def _adapter(backend: str) -> Any:
    from adapters.keras import adapter as keras_adapter

    cls = {
        "tensorflow": keras_adapter.KerasTensorFlow,
        "jax": keras_adapter.KerasJax,
        "torch": keras_adapter.KerasTorch,
    }[backend]
    return cls()


def _grads(step: Mapping[str, Any], shapes: Mapping[str, Any]) -> dict[str, Any]:
    return {n: None if g is None else decode(g, shapes[n]) for n, g in step.items()}


def _run(adapter: Any, job: Mapping[str, Any]) -> dict[str, Any]:
    config = AdamWConfig.from_json(job["config"])
    shapes = {n: p["shape"] for n, p in job["params"].items()}
    params = {n: decode(p["values"], p["shape"]) for n, p in job["params"].items()}
    dtype, device = job.get("dtype", "float32"), job.get("device", "cpu")
    run = adapter.create(config, params, dtype=dtype, device=device)
    traj: list[dict[str, list[str]]] = []
    save_at = job.get("save_at")
    resumed: list[dict[str, list[str]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.npz"
        for i, g in enumerate(job["grads"]):
            run.step(_grads(g, shapes))
            traj.append({n: encode(a) for n, a in run.params().items()})
            if save_at is not None and i + 1 == save_at:
                run.save(path)
        st = run.state()
        if save_at is not None:
            fresh = adapter.create(config, params, dtype=dtype, device=device)
            fresh.load(path)
            for g in job["grads"][save_at:]:
                fresh.step(_grads(g, shapes))
                resumed.append({n: encode(a) for n, a in fresh.params().items()})
    state = {
        "step": st.step,
        "m": {n: encode(a) for n, a in st.m.items()},
        "v": {n: encode(a) for n, a in st.v.items()},
        "v_max": None if st.v_max is None else {n: encode(a) for n, a in st.v_max.items()},
    }
    return {"params": traj, "state": state, "resumed": resumed}


def _teacher(adapter: Any, job: Mapping[str, Any]) -> dict[str, Any]:
    from adapters.protocol import CanonicalState

    config = AdamWConfig.from_json(job["config"])
    shapes = {n: p["shape"] for n, p in job["params"].items()}
    params = {n: decode(p["values"], p["shape"]) for n, p in job["params"].items()}
    st = job["state"]
    state = CanonicalState(
        step=int(st["step"]),
        m={n: decode(v, shapes[n]) for n, v in st["m"].items()},
        v={n: decode(v, shapes[n]) for n, v in st["v"].items()},
        v_max=None,
    )
    run = adapter.create(
        config,
        {n: np.zeros(s) for n, s in shapes.items()},
        dtype=job.get("dtype", "float32"),
        device=job.get("device", "cpu"),
    )
    run.set_state(params, state)
    step_before = run.state().step
    run.step(_grads(job["grads"][0], shapes))
    return {"step_before": step_before, "params": {n: encode(a) for n, a in run.params().items()}}


def _job(adapter: Any, job: Mapping[str, Any]) -> Any:
    try:
        if job["kind"] == "defaults":
            return {"config": adapter.native_defaults().to_json()}
        if job["kind"] == "run":
            return _run(adapter, job)
        if job["kind"] == "teacher":
            return _teacher(adapter, job)
        if job["kind"] == "other_backend":  # must fail: the backend is fixed per process
            return {"config": _adapter(job["backend"]).native_defaults().to_json()}
        raise ValueError(f"unknown job kind {job['kind']!r}")
    except Exception as exc:  # reported to the parent, which asserts on it
        return {"error": type(exc).__name__, "knob": getattr(exc, "field", None), "message": str(exc)}


def main(argv: Sequence[str]) -> int:
    backend = argv[0]
    jobs = json.loads(sys.stdin.read())
    adapter = _adapter(backend)
    results = [_job(adapter, job) for job in jobs]
    sys.stdout.write(MARKER + json.dumps(results) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
