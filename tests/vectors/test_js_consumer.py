"""The vectors are language-agnostic: a plain-JavaScript AdamW verifies itself against them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from adamw_ref.vectors import canonical_json, default_vectors_dir

ROOT = Path(__file__).resolve().parents[2]
VERIFY = ROOT / "consumers" / "js" / "verify.mjs"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node (Node.js) is not installed")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    assert NODE is not None
    return subprocess.run(
        [NODE, str(VERIFY), *args], capture_output=True, text=True, timeout=120, check=False
    )


def _summary(out: str) -> tuple[int, int, int]:
    m = re.search(r"(\d+) passed, (\d+) failed, (\d+) skipped", out)
    assert m, out
    return int(m[1]), int(m[2]), int(m[3])


def test_js_consumer_passes_every_vector() -> None:
    proc = _run()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    passed, failed, skipped = _summary(proc.stdout)
    total = sum(json.loads(p.read_text())["numberOfTests"] for p in default_vectors_dir().glob("*.json"))
    # It implements every knob, so it runs (and passes, bit for bit) every test.
    assert (passed, failed, skipped) == (total, 0, 0)


def test_js_consumer_fails_on_a_tampered_vector(tmp_path: Path) -> None:
    dst = tmp_path / "vectors"
    shutil.copytree(default_vectors_dir(), dst)
    path = dst / "adamw_keras3_test.json"
    doc = json.loads(path.read_text())
    test = doc["testGroups"][0]["tests"][0]
    exp = test["expected"][-1]["params"]["w"]
    x = float.fromhex(exp[0])
    exp[0] = (x + abs(x) * 2.0**-52).hex()  # one ulp away
    path.write_text(canonical_json(doc))
    proc = _run(str(dst))
    assert proc.returncode == 1, proc.stdout
    assert _summary(proc.stdout)[1] == 1
    assert f"FAIL adamw_keras3_test.json tcId {test['tcId']}" in proc.stdout
