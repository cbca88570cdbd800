"""Regression: torch float32 on subnormal gradients is not a false alarm.

A ``--full`` run flagged ``torch[forloop]-cpu-float32-tiny_magnitudes-free-s2`` (53 ulp at a
1e-32 parameter): with gradients ~1e-40, v = g^2 underflows to 0, eps dominates the denominator,
and the *absolute* rounding of the subnormal first moment (up to half the smallest subnormal per
operation) reaches theta multiplied by lr/(bc1 eps) ~ 1e8. The tolerance model's relative term
u|m| misses that; its absolute term c*mu*lr_t/(bc1 d) covers it. Without that term this fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance.cli import main


def test_torch_float32_subnormal_gradients_within_bound(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "out"
    main(
        [
            "run",
            "--adapter",
            "torch",
            "--implementation",
            "forloop",
            "--scenario",
            "tiny_magnitudes",
            "--dtype",
            "float32",
            "--seeds",
            "2",
            "--mode",
            "free",
            "--out",
            str(out),
            "--no-progress",
            "--no-render",
            "--no-diagnose",
        ]
    )
    cases = json.loads((out / "report.json").read_text(encoding="utf-8"))["cases"]
    assert cases and all(c["verdict"] in ("exact", "within_bound") for c in cases), [
        (c["id"], c["verdict"], c.get("first_divergence")) for c in cases
    ]
