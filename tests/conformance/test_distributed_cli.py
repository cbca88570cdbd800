"""``adamw-conformance run --distributed`` (issue 12): the option reaches the distributed tier with
the selection the run was given, its cases land in the report (written after each one), and a
resume re-runs them rather than keeping half a tier. The tier itself is tested in
``test_distributed*.py``; here it is replaced by a recorder so the wiring is checked in seconds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conformance import cli
from conformance.distributed import cases as dist


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def fake(out_dir: Path, **kw: Any) -> list[dict[str, Any]]:
        seen.append(dict(kw, out_dir=Path(out_dir)))
        row = dist._torch_blank(dist.TorchCase("ddp", 2, "dist_basic", "foreach", "float32"))
        row.update(verdict="exact", error=None)
        # the report on disk already holds the main run when the tier starts
        before = json.loads((Path(out_dir) / "report.json").read_text())
        assert before["cases"]
        kw["on_plan"](1)
        after = json.loads((Path(out_dir) / "report.json").read_text())
        assert after["envelope"]["planned"] == len(before["cases"]) + 1
        kw["on_case"](row)
        return [row]

    monkeypatch.setattr(dist, "run_distributed", fake)
    return seen


def _run(tmp: Path, *extra: str) -> int:
    args = ["run", "--scenario", "basic", "--mode", "free", "--dtype", "float64", "--no-render"]
    return cli.main([*args, "--out", str(tmp / "o"), *extra])


def test_distributed_reaches_the_tier_with_the_selection(tmp_path: Path, calls: list[dict[str, Any]]) -> None:
    assert (
        _run(tmp_path, "--adapter", "reference", "--adapter", "optax", "--distributed", "--seeds", "3") == 0
    )
    (call,) = calls
    assert call["strategies"] == ()  # torch not selected: no torch strategy
    assert call["jax"] is True and call["federated_frameworks"] == ["optax"]
    assert call["nccl"] is False and call["seed"] == 3 and call["world_sizes"] == (2, 4)
    cases = json.loads((tmp_path / "o" / "report.json").read_text())["cases"]
    assert [c["id"] for c in cases if "distributed" in c] == [
        "torch-ddp[foreach]-cpu-float32-dist_basic-w2-free-s0"
    ]


def test_torch_selects_the_strategies_and_no_diagnose_is_passed_on(
    tmp_path: Path, calls: list[dict[str, Any]]
) -> None:
    pytest.importorskip("torch")
    args = ("--adapter", "torch", "--implementation", "foreach", "--distributed", "--no-diagnose")
    assert _run(tmp_path, *args) == 0
    (call,) = calls
    assert tuple(call["strategies"]) == tuple(dist.STRATEGIES)
    assert call["jax"] is False and call["federated_frameworks"] == ["torch"]
    assert call["diagnose"] is False
    assert call["implementations"] == ["foreach"]  # --implementation narrows the tier too
    assert call["dtypes"] == ["float64"]  # so does --dtype (_run passes float64)


def test_an_implementation_without_a_distributed_path_runs_no_torch_strategy(
    tmp_path: Path, calls: list[dict[str, Any]]
) -> None:
    pytest.importorskip("torch")
    args = ("--adapter", "torch", "--implementation", "forloop-tensor-lr", "--distributed")
    assert _run(tmp_path, *args) == 0
    (call,) = calls
    assert call["strategies"] == () and call["implementations"] == []


def test_without_the_option_the_tier_does_not_run(tmp_path: Path, calls: list[dict[str, Any]]) -> None:
    assert _run(tmp_path, "--adapter", "reference") == 0
    assert calls == []


def test_no_adapter_with_a_tier_says_so(
    tmp_path: Path, calls: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(tmp_path, "--adapter", "reference", "--distributed") == 0
    assert calls == []
    assert "distributed: nothing to run (the tier needs the torch or optax adapter" in capsys.readouterr().err
