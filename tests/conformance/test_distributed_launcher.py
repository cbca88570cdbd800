"""The launcher's command line: usage errors, torchrun detection, a local run, a torchrun run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conformance.distributed import launcher
from conformance.report import schema as rp


@pytest.fixture(autouse=True)
def _slow_needs_runslow(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("slow") and not (
        request.config.getoption("--runslow", default=False) or os.environ.get("ADAMW_RUNSLOW") == "1"
    ):
        pytest.skip("slow: run with --runslow")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--strategy", "ddp", "--world-size", "3"], "--world-size: world_size=3: must be a power of two"),
        (["--strategy", "zero", "--checkpoint-at", "5"], "checkpoints run for"),
        (["--strategy", "ddp", "--checkpoint-at", "12"], "--checkpoint-at 12"),
        (["--strategy", "ddp", "--plant", "nonsense"], "--plant 'nonsense'"),
        (["--jax", "--plant", "extra_step_on_resume"], "with --jax"),
        (["--strategy", "ddp", "--timeout", "0"], "--timeout 0"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    args: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t0 = time.monotonic()
    assert launcher.main([*args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1
    assert time.monotonic() - t0 < 1.0
    assert not (tmp_path / "report.json").exists()


def test_torchrun_is_detected_from_its_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("TORCHELASTIC_RUN_ID", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "ADAMW_PARENT_PID"):
        monkeypatch.delenv(k, raising=False)
    assert not launcher.under_torchrun()
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "abc")
    assert launcher.under_torchrun()
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    for k, v in {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(k, v)
    assert launcher.under_torchrun()
    monkeypatch.setenv("ADAMW_PARENT_PID", "1")  # a rank of our own launcher is not torchrun's
    assert not launcher.under_torchrun()


@pytest.mark.slow
def test_a_local_run_writes_a_report(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    rc = launcher.main(
        ["--strategy", "ddp", "--implementation", "fused", "--dtype", "float32", "--out", str(tmp_path)]
    )
    assert rc == 0
    report = rp.load(tmp_path)
    assert [c["id"] for c in report["cases"]] == ["torch-ddp[fused]-cpu-float32-dist_basic-w2-free-s0"]


@pytest.mark.slow
def test_under_torchrun(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun not installed")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("ADAMW_PARENT_PID", None)
    cmd = [torchrun, "--standalone", "--nproc-per-node", "2", "-m", "conformance.distributed.launcher"]
    cmd += [
        "--strategy",
        "fsdp2",
        "--implementation",
        "foreach",
        "--dtype",
        "float32",
        "--out",
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = rp.load(tmp_path)
    (case,) = report["cases"]
    assert case["id"] == "torch-fsdp2[foreach]-cpu-float32-dist_basic-w2-free-s0"
    extra: dict[str, Any] = dict(case)  # the optional 'distributed' field is not in the TypedDict
    assert extra["distributed"]["checks"]["bitwise_vs_single_process"]
