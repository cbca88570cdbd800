"""Cross-framework state transfer (adapters/transfer.py, issue 15 part 4).

Independent sources: a run that never moved (the round trip must continue it bit for bit), the
binary64 reference from the same start point within the suite's derived bound
(conformance/tolerance.py), and the frameworks' documented state (torch keeps a count per
parameter, Optax and MLX one global count; torch's AMSGrad keeps the max of raw v, Optax's of
the bias-corrected v-hat; MLX has no AMSGrad and no bias correction by default)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from adamw_ref import WarmupCosine, get_profile
from adapters import CanonicalState, load_adapter
from adapters.transfer import (
    TransferRefused,
    cli_main,
    demo_problem,
    load_canonical,
    plan,
    read_state,
    save_canonical,
    transfer,
)

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("torch", "optax")), reason="needs torch and optax"
)
TORCH = get_profile("torch").config.replace(lr=1e-2, weight_decay=0.1)


def _bits(d: dict[str, Any]) -> dict[str, Any]:
    return {n: np.ascontiguousarray(np.asarray(a, np.float64)).view(np.uint64).tolist() for n, a in d.items()}


def _torch(cfg: Any = TORCH, dtype: str = "float32") -> Any:
    return load_adapter("torch").create(cfg, demo_problem(0)[0], implementation="forloop", dtype=dtype)


def test_torch_optax_torch_round_trip_continues_bit_exactly() -> None:
    _, grads = demo_problem(8)
    moving, staying = _torch(), _torch()
    for g in grads[:4]:
        moving.step(g)
        staying.step(g)
    there = transfer(moving, "optax", source="torch", config=TORCH, dtype="float32")
    assert there.state_bit_exact, there.differences
    assert there.plan.residuals == []  # torch -> optax: the same algorithm up to rounding
    back = transfer(
        there.run, "torch", source="optax", config=there.plan.target_config, implementation="forloop"
    )
    assert back.state_bit_exact and back.plan.target_config == TORCH
    assert read_state(back.run)[1].param_steps == dict.fromkeys(("w", "b", "s"), 4)
    p_back, s_back = read_state(back.run)
    p_stay, s_stay = read_state(staying)
    assert _bits(p_back) == _bits(p_stay) and _bits(s_back.m) == _bits(s_stay.m)
    assert _bits(s_back.v) == _bits(s_stay.v) and s_back.step == s_stay.step
    for g in grads[4:]:
        back.run.step(g)
        staying.step(g)
    assert _bits(back.run.params()) == _bits(staying.params())


def test_the_moved_run_follows_the_target_algorithm_within_the_derived_bound() -> None:
    from conformance.tolerance import RefPoint, spec_for, step_bounds

    _, grads = demo_problem(10)
    run = _torch()
    for g in grads[:5]:
        run.step(g)
    moved = transfer(run, "optax", source="torch", config=TORCH, dtype="float32")
    cfg = moved.plan.target_config
    assert cfg.decay_form.value == "added_to_update" and cfg.step_count_scope.value == "global"
    p0, st = read_state(moved.run)
    ref = load_adapter("reference").create(cfg, p0, dtype="float64")
    ref.set_state(p0, st)
    points = [RefPoint(p0, st.m, st.v, None)]
    got = []
    for g in grads[5:]:
        moved.run.step(g)
        ref.step(g)
        s = ref.state()
        points.append(RefPoint(ref.params(), s.m, s.v, None))
        got.append(moved.run.params())
    bounds = step_bounds(
        cfg.replace(bias_correction_offset=5), points, grads[5:], spec_for("float32"), "free"
    )
    for t, p in enumerate(got):
        for n, a in p.items():
            assert np.all(np.abs(a - points[t + 1].params[n]) <= bounds[t][n]), (t, n)


def test_equal_per_parameter_counts_move_into_one_global_count() -> None:
    run = _torch()
    for g in demo_problem(3)[1]:
        run.step(g)
    _, st = read_state(run)
    p = plan("torch", TORCH, "optax", st)
    assert p.step == 3 and p.param_steps is None


def test_per_parameter_counts_that_differ_are_refused_by_a_global_count() -> None:
    run = _torch()
    g = demo_problem(3)[1]
    run.step(g[0])
    run.step({**g[1], "b": None})  # b skips a step: torch's count for b is 1, for w and s 2
    with pytest.raises(TransferRefused) as info:
        transfer(run, "optax", source="torch", config=TORCH)
    assert info.value.what == "param_steps" and "['b']" in str(info.value)
    # a framework with per-parameter counts takes them
    ok = transfer(run, "torch", source="torch", config=TORCH, implementation="foreach")
    assert read_state(ok.run)[1].param_steps == {"w": 2, "b": 1, "s": 2} and ok.state_bit_exact


@pytest.mark.parametrize(
    "source,changes,target,what",
    [
        ("torch", {"amsgrad": True}, "optax", "amsgrad"),  # max of v vs max of v-hat
        ("torch", {"maximize": True}, "mlx", "maximize"),
        ("mlx", {}, "torch", "bias_correction"),  # mlx's default: no bias correction
        ("optax", {"nesterov": True}, "torch", "nesterov"),
        ("torch", {"lr_schedule": WarmupCosine(warmup_steps=2, total_steps=10)}, "optax", "lr_schedule"),
    ],
)
def test_moves_that_cannot_continue_faithfully_are_refused_by_name(
    source: str, changes: dict[str, Any], target: str, what: str
) -> None:
    if importlib.util.find_spec("mlx") is None and "mlx" in (source, target):
        pytest.skip("needs mlx")
    cfg = get_profile(load_adapter(source).info.profile).config.replace(lr=1e-2, **changes)
    params = demo_problem(0)[0]
    zero = {n: np.zeros_like(a) for n, a in params.items()}
    st = CanonicalState(2, zero, zero, dict(zero) if cfg.amsgrad else None)
    with pytest.raises(TransferRefused) as info:
        plan(source, cfg, target, st)
    assert info.value.what == what, str(info.value)
    assert f"{source} -> {target}" in str(info.value)


def test_amsgrad_moves_where_both_keep_the_max_of_raw_v() -> None:
    cfg = TORCH.replace(amsgrad=True)
    run = _torch(cfg)
    for g in demo_problem(3)[1]:
        run.step(g)
    moved = transfer(run, "reference", source="torch", config=cfg)  # the reference takes any config
    assert moved.state_bit_exact and moved.plan.target_config == cfg


def test_canonical_files_are_bit_exact(tmp_path: Path) -> None:
    params = {"w": np.array([[1.5, -0.0], [np.inf, 2.0**-1074]]), "s": np.array(0.1)}
    st = CanonicalState(7, dict(params), {n: a * 2 for n, a in params.items()}, None, {"w": 7, "s": 6})
    save_canonical(tmp_path / "c.json", params, st, TORCH, "float64", "torch")
    p2, s2, cfg, dtype, src = load_canonical(tmp_path / "c.json")
    assert _bits(p2) == _bits(params) and _bits(s2.v) == _bits(st.v) and s2.param_steps == st.param_steps
    assert cfg == TORCH and (dtype, src, s2.step) == ("float64", "torch", 7) and p2["s"].shape == ()


def test_the_command_moves_a_saved_torch_state_into_optax(tmp_path: Path, capsys: Any) -> None:
    _, grads = demo_problem(6)
    run = _torch()
    for g in grads[:3]:
        run.step(g)
    run.save(tmp_path / "torch.npz")
    rc = cli_main(
        [
            "--from",
            "torch",
            "--state",
            str(tmp_path / "torch.npz"),
            "--to",
            "optax",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "bit-exact in float32" in out and "optax.adamw(learning_rate=0.01" in out
    cfg = plan("torch", TORCH, "optax", read_state(run)[1]).target_config
    opt = load_adapter("optax").create(cfg, {n: np.zeros_like(a) for n, a in demo_problem(0)[0].items()})
    opt.load(tmp_path / "o")
    p_opt, s_opt = read_state(opt)
    p_t, s_t = read_state(run)
    assert _bits(p_opt) == _bits(p_t) and _bits(s_opt.m) == _bits(s_t.m) and s_opt.step == 3


def test_the_command_refuses_in_one_line(tmp_path: Path, capsys: Any) -> None:
    assert (
        cli_main(["--from", "torch", "--state", str(tmp_path / "nope"), "--to", "optax", "--out", "x"]) == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err
    assert cli_main(["--from", "torch"]) == 2
    assert "missing --state" in capsys.readouterr().err


def test_the_chain_demonstration_against_the_reference(capsys: Any) -> None:
    assert cli_main(["--chain", "torch,optax,reference", "--steps", "2", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"state_bit_exact": true' in out and "false" not in out
