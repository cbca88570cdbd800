"""Optax (jit and eager), Keras 3 (JAX, TensorFlow, torch backends) and MLX predicted bit for bit
by their operation orders (:mod:`adamw_ref.oporder`).

Each implementation runs through ``benchmarks/bit_exact.py`` (one subprocess per framework:
Keras reads its backend once per process) on a gradient distribution the profiles were not
derived on, with a seed of its own: ``tiny`` (down into the subnormal range, where XLA and
TensorFlow flush to zero) for the XLA and TensorFlow ones, ``heavy`` (Student-t, zeros, a
constant run) for the others; every per-step value of params, m, v (and
AMSGrad's maximum) must be predicted exactly. 700 steps keep the run short; the committed
``benchmarks/results/bit_exact.json`` has 1000 elements x 1000 steps.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NEEDS = {
    "optax:jit": ("optax", "jax"),
    "optax:nojit": ("optax", "jax"),
    "keras-jax:default": ("keras", "jax"),
    "keras-tensorflow:default": ("keras", "tensorflow"),
    "keras-torch:default": ("keras", "torch"),
    "mlx:default": ("mlx",),
}
#: XLA and TensorFlow flush subnormals (FTZ/DAZ): their runs reach into the subnormal range
DISTRIBUTION = {
    impl: "tiny" if impl.startswith(("optax", "keras-jax", "keras-tensorflow")) else "heavy" for impl in NEEDS
}


@pytest.mark.parametrize("impl", list(NEEDS))
def test_profile_predicts_every_element(impl: str, tmp_path: Path) -> None:
    missing = [m for m in NEEDS[impl] if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{missing} not installed")
    out = tmp_path / "bit_exact.json"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "bit_exact.py"),
        "--impl",
        impl,
        "--elements",
        "29",
        "--steps",
        "700",
        "--seed",
        str(7000 + len(impl)),
        "--distribution",
        DISTRIBUTION[impl],
        "--out",
        str(out),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=900)
    cases = json.loads(out.read_text())["results"][impl]["cases"]
    assert len(cases) == 3
    for case in cases:
        assert "error" not in case, case.get("error")
        assert case["oporder"]["exact_all_values"] == 1.0, (case["config"], case["oporder"])
        assert case["canonical"]["exact_all_values"] < 1.0  # the canonical order is not theirs
