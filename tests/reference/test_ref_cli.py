"""The ``adamw-ref`` command line, run in-process through ``main(argv)``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from adamw_ref import BINARY32_ARITHMETIC, PROFILES, get_profile, init, run_trajectory, step
from adamw_ref.cli import main
from adamw_ref.state import state_to_json

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "case_basic.json"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_explain_prints_the_hand_values(capsys: pytest.CaptureFixture[str]) -> None:
    # the dyadic step of test_ref_hand: u = 3/4, theta1 = 27/32 = 0.84375
    code, out, _ = run(
        capsys,
        "explain",
        "--profile",
        "torch",
        "--lr",
        "0.125",
        "--weight-decay",
        "0.5",
        "--beta1",
        "0.5",
        "--beta2",
        "0.75",
        "--eps",
        "0.25",
        "--param",
        "1.0",
        "--grad",
        "0.75",
    )
    assert code == 0
    lines = {
        ln.split("=")[0].strip(): ln.rsplit("= ", 1)[1]
        for ln in out.splitlines()
        if "= " in ln and ln.startswith("    ")
    }
    assert lines["u"] == "0.75" and lines["theta_t"] == "0.84375"
    assert lines["m"] == "0.375" and lines["v"] == "0.140625" and lines["denom"] == "1.0"


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_explain_json_final_param_equals_step(capsys: pytest.CaptureFixture[str], profile: str) -> None:
    code, out, _ = run(
        capsys,
        "explain",
        "--profile",
        profile,
        "--lr",
        "1e-3",
        "--weight-decay",
        "0.01",
        "--param",
        "1.0,-0.5",
        "--grad",
        "0.1,0.3",
        "--steps",
        "3",
        "--dtype",
        "float32",
        "--json",
    )
    assert code == 0
    doc = json.loads(out)
    cfg = get_profile(profile).config.replace(lr=1e-3, weight_decay=0.01)
    traj = run_trajectory({"theta": [1.0, -0.5]}, [{"theta": [0.1, 0.3]}] * 3, cfg, BINARY32_ARITHMETIC)
    got = [float(x) for x in doc["steps"][-1]["params"]["theta"]["theta"]]
    assert got == list(traj.params[3]["theta"])


def test_explain_from_state_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = get_profile("keras3").config
    p = {"k": [2.0]}
    _, st = step(p, {"k": [0.5]}, init(p, cfg), cfg)
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state_to_json(st)))
    code, out, _ = run(
        capsys,
        "explain",
        "--profile",
        "keras3",
        "--param",
        "2.0",
        "--grad",
        "-0.25",
        "--state-json",
        str(path),
        "--json",
    )
    assert code == 0
    doc = json.loads(out)
    expected, _ = step({"k": [2.0]}, {"k": [-0.25]}, st, cfg)
    assert doc["steps"][0]["t"] == 2 and doc["steps"][0]["params"]["k"]["k"] == 2
    assert float(doc["steps"][0]["params"]["k"]["theta"][0]) == expected["k"][0]


def test_explain_set_knob_and_hex(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "explain",
        "--set",
        "decay_form=proximal",
        "--set",
        "decay_timing=after_step",
        "--set",
        "amsgrad=true",
        "--hex",
    )
    assert code == 0 and "1 + s" in out and "v_max" in out and "[0x" in out


def test_run_writes_trajectory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "traj.json"
    code, _, err = run(capsys, "run", str(EXAMPLE), "-o", str(target))
    assert code == 0 and "3 steps" in err
    doc = json.loads(target.read_text())
    assert doc["format"] == "adamw-ref/trajectory" and len(doc["steps"]) == 4
    code, out, _ = run(capsys, "run", str(EXAMPLE), "--no-decimal")
    assert code == 0 and "decimal" not in json.loads(out)["steps"][1]


def test_profiles_and_knobs(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "profiles")
    assert code == 0 and all(f"{n}:" in out for n in PROFILES) and "source:" in out
    code, out, _ = run(capsys, "profiles", "mlx", "--json")
    assert code == 0 and json.loads(out)[0]["config"]["bias_correction"] is False
    code, out, _ = run(capsys, "knobs", "--json")
    rows = {r["knob"]: r for r in json.loads(out)}
    assert set(rows["decay_scaling"]["profiles"]["unscaled"]) == {"tfa", "optimisers_jl_decoupled", "onnx"}
    assert rows["eps_placement"]["profiles"]["before_bias_correction"]
    code, out, _ = run(capsys, "knobs")
    assert code == 0 and "schedule_multiplier" in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["explain", "--profile", "nope"], "profile"),
        (["explain", "--lr", "-1"], "lr"),
        (["explain", "--param", "1,2", "--grad", "1,2,3"], "--grad"),
        (["explain", "--param", "nan"], "params"),
        (["explain", "--dtype", "float8"], "--dtype"),
        (["explain", "--set", "decay_form"], "--set"),
        (["explain", "--set", "decay_form=l2"], "decay_form"),
        (["explain", "--steps", "0"], "--steps"),
        (["run", "/nonexistent/case.json"], "case file"),
        (["profiles", "nope"], "profile"),
    ],
)
def test_errors_exit_2_without_traceback(
    capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("adamw-ref: error:") and needle in err
    assert "Traceback" not in err


def test_bad_json_case(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, _, err = run(capsys, "run", str(bad))
    assert code == 2 and "not valid JSON" in err
    bad.write_text(
        json.dumps({"format": "adamw-ref/case", "version": 1, "params": {"w": [1]}, "grads": [{"w": [1, 2]}]})
    )
    code, _, err = run(capsys, "run", str(bad))
    assert code == 2 and "grads[0].w" in err


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "frobnicate")[0] == 2
    assert run(capsys)[0] == 2
    assert run(capsys, "--help")[0] == 0


SEEN: list[list[str]] = []


def _fake_command(argv: list[str]) -> int:
    SEEN.append(argv)
    return 0


def _entry_points(*eps: Any) -> Any:
    from importlib.metadata import EntryPoint

    from adamw_ref.commands import GROUP

    made = [EntryPoint(name=n, value=v, group=GROUP) for n, v in eps]
    return lambda group: made if group == GROUP else []


def test_registered_commands_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # no installed package registers the verbs: one line, exit 2, no traceback
    monkeypatch.setattr("adamw_ref.commands.entry_points", _entry_points())
    for argv in (["translate", "--help"], ["vectors", "verify", "--adapter", "torch"]):
        code, _, err = run(capsys, *argv)
        assert code == 2 and "no installed package provides the command" in err, argv
        assert len(err.strip().splitlines()) == 1


def test_registered_command_broken(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        "adamw_ref.commands.entry_points", _entry_points(("translate", "no_such_module_xyz:cli_main"))
    )
    code, _, err = run(capsys, "translate")
    assert code == 2 and "cannot be loaded" in err and "no_such_module_xyz" in err


def test_registered_command_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    target = f"{__name__}:_fake_command"
    monkeypatch.setattr(
        "adamw_ref.commands.entry_points", _entry_points(("translate", target), ("vectors-verify", target))
    )
    SEEN.clear()
    assert main(["translate", "--from", "torch"]) == 0
    assert main(["vectors", "verify", "--adapter", "x"]) == 0
    assert SEEN == [["--from", "torch"], ["--adapter", "x"]]


def test_this_distribution_registers_its_commands() -> None:
    from adamw_ref.commands import registered

    found = registered()
    if not found:
        pytest.skip("adamw-ref is not installed (no entry points) in this environment")
    assert found.get("translate") == "adapters.translate:cli_main"
    assert found.get("vectors-verify") == "conformance.vectors:cli_main"


def test_console_script_runs() -> None:
    exe = Path(sys.executable).with_name("adamw-ref")
    if not exe.exists():
        pytest.skip("console script not installed in this environment")
    res = subprocess.run(
        [str(exe), "explain", "--profile", "nope"], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import adamw_ref

    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"adamw-ref {adamw_ref.__version__}"


def test_every_option_has_help() -> None:
    from adamw_ref.cli import build_parser

    parser = build_parser()
    subs = [a for a in parser._actions if isinstance(a, type(parser._subparsers._group_actions[0]))]  # type: ignore[union-attr]
    for name, sub in subs[0].choices.items():
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"adamw-ref {name} {action.option_strings[0]} has no help"


def test_one_name_per_framework_aliases_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    from adamw_ref.profiles import ALIASES, get_profile

    assert get_profile("keras") is get_profile("keras3")  # the framework's name
    assert get_profile("keras-jax") is get_profile("keras3")  # the adapter's name
    assert get_profile("pytorch") is get_profile("torch")
    assert all(get_profile(a) is get_profile(n) for a, n in ALIASES.items())
    code, out, _ = run(capsys, "explain", "--profile", "keras", "--json")
    assert code == 0 and json.loads(out)["config"] == get_profile("keras3").config.to_json()
