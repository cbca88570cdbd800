"""``adamw-conformance bench``: a tiny run end to end (no timing assertions: timings belong in
benchmarks/results, measured as ratios in one run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance import bench


def test_tiny_run_writes_json_table_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    rc = bench.bench_main(
        [
            "--impl",
            "oracle-numpy,spec",
            "--sizes",
            "100,1e3",
            "--dtypes",
            "float32,float64",
            "--repeat",
            "2",
            "--min-sample",
            "0.002",
            "--quiet",
            "--json",
            str(out),
            "--plot",
            str(png),
        ]
    )
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["bytes_per_param"] == {"float32": 28, "float64": 56}
    assert doc["bytes_per_param_amsgrad"] == {"float32": 36, "float64": 72}
    assert doc["machine"]["cores"] and doc["command"].startswith("adamw-conformance bench")
    rows = {(r["impl"], r["dtype"], r["size"]): r for r in doc["results"]}
    assert set(rows) == {
        (i, d, n) for i in ("oracle-numpy", "spec") for d in ("float32", "float64") for n in (100, 1000)
    }
    for r in rows.values():
        assert r["skipped"] is None, r
        assert r["step_s"] > 0 and r["roofline_gbs"] > 0 and r["fraction"] > 0
        assert r["gbs"] == pytest.approx(bench.bytes_per_param(r["dtype"]) * r["size"] / r["step_s"] / 1e9)
        assert r["measured"]
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    table = capsys.readouterr().out
    assert "oracle-numpy" in table and "fraction" in table


def test_sizes_beyond_the_specs_limit_and_missing_frameworks_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(bench.NEEDS, "mlx", ("no_such_module_for_bench",))
    out = tmp_path / "b.json"
    big = bench.SPEC_MAX * 10
    args = ["--impl", "spec,mlx", "--sizes", f"10,{big}", "--dtypes", "float32", "--repeat", "1"]
    rc = bench.bench_main([*args, "--min-sample", "0.001", "--quiet", "--json", str(out)])
    assert rc == 0
    rows = json.loads(out.read_text())["results"]
    spec_big = next(r for r in rows if r["impl"] == "spec" and r["size"] == big)
    assert "up to" in spec_big["skipped"]
    mlx = [r for r in rows if r["impl"] == "mlx"]
    assert mlx and all("not installed" in r["skipped"] for r in mlx)


@pytest.mark.parametrize(
    "argv",
    [["--sizes", "0"], ["--sizes", "1.5"], ["--impl", "nope"], ["--dtypes", "float16"], ["--repeat", "0"]],
)
def test_bad_arguments_exit_2(argv: list[str]) -> None:
    assert bench.bench_main(argv) == 2


def test_implementation_groups_expand() -> None:
    assert bench._impls("oracle") == ["oracle-numba", "oracle-numpy", "oracle-spec", "spec"]
    assert bench._impls("keras") == ["keras-tensorflow", "keras-jax", "keras-torch"]
    assert "torch-fused" in bench._impls("torch")
    assert bench._impls("torch-fused") == ["torch-fused", "torch-fused-cuda"]  # with its CUDA variant
    assert bench._sizes("1e4,100,1e4") == [100, 10_000]
