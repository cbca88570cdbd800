"""Closed-loop training tasks: data, NumPy gradients, torch vs reference, naive torch->keras port.

Runs are 200 steps of logistic regression on digits (batch 64). Frameworks run in their own
process through the CLI (``python -m conformance.closed_loop.suite``), Keras with KERAS_BACKEND set.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="scikit-learn provides the digits dataset")

from conformance.closed_loop.data import load_task
from conformance.closed_loop.reference import loss_and_grads
from conformance.closed_loop.suite import closed_loop_cases, run_in_subprocess

STEPS = 200
LR = 1e-3
U64 = 2.0**-53
# Rounding-level bound for float64 parameters after T steps (docs/conformance/closed_loop.md):
# per step the two gradients differ by <= c*n*u relatively (n = 64 terms per reduction, c = 4),
# AdamW's scale-free update turns that into <= A*lr*c*n*u per element (A = 10 covers |g|/|m_hat|
# where the running mean cancels) and, on this convex task, the errors add over T steps.
PARAM_BOUND_F64 = STEPS * LR * 10 * 4 * 64 * U64  # ~5.7e-14


def _envelope() -> dict[str, Any]:
    return {
        "suite_version": "test",
        "spec_version": "1.0",
        "commit": None,
        "created": "2026-01-01T00:00:00Z",
        "command": "pytest",
        "python": "3",
        "platform": "test",
        "frameworks": {},
        "devices": [{"kind": "cpu", "model": "cpu", "driver": None, "runtime": None}],
        "precision": {},
        "seeds": [0],
        "env": {},
    }


def _max_param_diff(a: dict[str, Any], b: dict[str, Any]) -> float:
    return max(float(np.max(np.abs(np.asarray(a[k]) - np.asarray(b[k])))) for k in b)


@pytest.fixture(scope="module")
def torch_record() -> dict[str, Any]:
    pytest.importorskip("torch")
    rec = run_in_subprocess("torch", "logreg", STEPS, "float64", 0)
    assert rec["error"] is None, rec["error"]
    return rec


@pytest.fixture(scope="module")
def keras_record() -> dict[str, Any]:
    pytest.importorskip("keras")
    pytest.importorskip("jax")
    rec = run_in_subprocess("keras-jax", "logreg", STEPS, "float64", 0)
    assert rec["error"] is None, rec["error"]
    return rec


def test_task_data_is_deterministic_and_standardized() -> None:
    a, b = load_task("mlp", 30, seed=3), load_task("mlp", 30, seed=3)
    assert np.array_equal(a.batches, b.batches) and np.array_equal(a.x_train, b.x_train)
    assert all(np.array_equal(a.init[k], b.init[k]) for k in a.init)
    assert a.x_train.shape == (1437, 64) and a.x_test.shape == (360, 64)
    assert a.batches.shape == (30, 64)
    # one epoch = 22 batches drawn from one permutation: no index repeats inside it
    assert len(np.unique(a.batches[:22])) == 22 * 64
    # standardized with the training statistics: mean 0, std 1 (0 for constant pixels)
    assert np.max(np.abs(a.x_train.mean(axis=0))) < 1e-12
    std = a.x_train.std(axis=0)
    assert np.all((np.abs(std - 1) < 1e-12) | (std == 0))
    assert [k for k in a.init] == ["W1", "b1", "W2", "b2"]
    assert load_task("logreg", 5, seed=4).batches.tolist() != a.batches[:5].tolist()


@pytest.mark.parametrize("bad", [{"task": "svm"}, {"steps": 0}, {"batch_size": 0}])
def test_load_task_rejects_bad_input(bad: dict[str, Any]) -> None:
    kw: dict[str, Any] = {"task": "logreg", "steps": 5, **bad}
    with pytest.raises(ValueError, match=next(iter(bad))):
        load_task(kw.pop("task"), kw.pop("steps"), **kw)


def test_numpy_gradients_match_central_differences() -> None:
    """The reference's NumPy backward agrees with central finite differences of its forward
    (truncation O(h^2) ~ 1e-10 with h = 1e-5, cancellation ~ u*L/h ~ 1e-11)."""
    data = load_task("mlp", 1, seed=1)
    x, y = data.x_train[data.batches[0]], data.y_train[data.batches[0]]
    _, grads = loss_and_grads(data.init, x, y)
    rng = np.random.default_rng(0)
    h = 1e-5
    for name in data.init:
        for _ in range(3):
            idx = tuple(rng.integers(0, s) for s in data.init[name].shape)
            plus = {k: v.copy() for k, v in data.init.items()}
            minus = {k: v.copy() for k, v in data.init.items()}
            plus[name][idx] += h
            minus[name][idx] -= h
            fd = (loss_and_grads(plus, x, y)[0] - loss_and_grads(minus, x, y)[0]) / (2 * h)
            assert abs(fd - grads[name][idx]) < 1e-8, (name, idx)


@pytest.mark.framework("torch")
def test_torch_closed_loop_matches_reference_float64(torch_record: dict[str, Any]) -> None:
    """Same data, batches and initial weights; the gradients come from different code (torch
    autograd vs NumPy), so the runs differ by rounding only: parameters within
    PARAM_BOUND_F64 (~5.7e-14) after 200 steps, predictions identical."""
    run, ref = torch_record["run"], torch_record["reference"]
    assert len(run["loss"]) == len(ref["loss"]) == STEPS
    assert _max_param_diff(run["final_params"], ref["final_params"]) <= PARAM_BOUND_F64
    # the step-1 loss is computed from identical weights: only forward rounding differs
    # (a 64x64 matmul, exp/log over 10 classes: a few hundred roundings of size u*|L|)
    assert abs(run["loss"][0] - ref["loss"][0]) <= 256 * U64 * ref["loss"][0]
    # parameters 1e-13 apart cannot change an arg-max unless two logits tie to 1e-11
    assert run["train_acc"] == ref["train_acc"] and run["test_acc"] == ref["test_acc"]
    # the task really trains: the loss falls (initial loss ~ ln(10) + init noise)
    assert np.mean(run["loss"][-20:]) < 0.5 * np.mean(run["loss"][:5])
    case = closed_loop_cases([torch_record])[0]
    assert case["verdict"] == "within_bound" and case["mode"] == "closed_loop"


@pytest.mark.framework("torch")
@pytest.mark.framework("keras")
def test_naive_port_torch_to_keras_differs_beyond_rounding(
    torch_record: dict[str, Any], keras_record: dict[str, Any]
) -> None:
    """Keras' epsilon is epsilon-hat (added to sqrt(v), not sqrt(v_hat)): eps=1e-8 passed as-is
    acts like 1e-8/sqrt(1-beta2^t) ~ 3e-7 in PyTorch terms at t=1, changing each update by
    ~eps_hat/|g| ~ 1e-5 relative for gradients ~1e-2: far above float64 rounding."""
    kl = np.asarray(keras_record["run"]["loss"])
    tl = np.asarray(torch_record["run"]["loss"])
    diff = np.abs(kl - tl)
    assert diff[0] <= 256 * U64 * tl[0]  # identical weights at step 1: same loss to rounding
    assert diff.max() > 1e4 * 256 * U64 * tl.max()  # later: far above rounding
    assert (
        _max_param_diff(keras_record["run"]["final_params"], torch_record["run"]["final_params"])
        > 1e3 * PARAM_BOUND_F64
    )
    # and Keras agrees with the reference run under its own (keras3) profile
    assert (
        _max_param_diff(keras_record["run"]["final_params"], keras_record["reference"]["final_params"])
        <= PARAM_BOUND_F64
    )
    cases = closed_loop_cases([torch_record, keras_record])
    port = next(c for c in cases if c["scenario"] == "logreg_naive_port")
    assert port["verdict"] == "acceptable" and port["acceptable_flag"] == "naive_port"
    best = port["diagnosis"]["candidates"][0]
    assert best["name"] in ("eps_placement=before_bias_correction", "profile keras3")
    assert best["score"] <= 1.0


@pytest.mark.framework("torch")
def test_cases_follow_report_schema(torch_record: dict[str, Any]) -> None:
    pytest.importorskip("jsonschema")
    from conformance.report.schema import validate

    skipped = {
        **torch_record,
        "framework": "mlx",
        "profile": "mlx",
        "run": None,
        "skipped": "mlx is not installed",
    }
    failed = {
        **torch_record,
        "framework": "optax",
        "profile": "optax",
        "run": None,
        "error": "RuntimeError: boom",
    }
    blown = {
        **torch_record,
        "framework": "optax",
        "profile": "optax",
        "run": {**torch_record["run"], "loss": [math.nan] * STEPS},
    }
    cases = closed_loop_cases([torch_record, skipped, failed, blown])
    # the blown run also gets a naive-port case (vs the torch run): divergent as well
    assert [c["verdict"] for c in cases] == ["within_bound", "skipped", "error", "divergent", "divergent"]
    assert cases[3]["first_divergence"]["step"] == 1  # NaN loss: off from the first step
    validate(
        {
            "schema": "adamw-conformance/report",
            "schema_version": "1.0",
            "envelope": _envelope(),
            "cases": cases,
        }
    )
    case = cases[0]
    assert set(case["metrics"]) >= {"W", "b", "loss", "train_acc", "test_acc"}
    assert case["series"]["step"] == list(range(1, STEPS + 1))
    assert all(math.isfinite(e) and e <= 1.0 for e in case["series"]["err"])
    assert "python -m conformance.closed_loop.suite --framework torch" in case["repro"]
    assert case["bound"]["param_abs"] == pytest.approx(PARAM_BOUND_F64)


@pytest.mark.xfail(
    reason="finding: Keras 3.15.1 on TensorFlow casts beta_1/beta_2 through "
    "float32 for the bias-correction powers (keras.ops.cast(0.999, 'float64') "
    "== fl32(0.999)), so float64 updates are ~6.7e-6 relative off",
    strict=False,
)
@pytest.mark.framework("keras")
def test_keras_tensorflow_float64_matches_keras3_reference() -> None:
    pytest.importorskip("keras")
    pytest.importorskip("tensorflow")
    rec = run_in_subprocess("keras-tensorflow", "logreg", 50, "float64", 0)
    assert rec["error"] is None, rec["error"]
    assert (
        _max_param_diff(rec["run"]["final_params"], rec["reference"]["final_params"])
        <= 50 * LR * 10 * 4 * 64 * U64
    )


def test_the_wide_task_has_realistic_width() -> None:
    """--full adds mlp_wide: 64-512-512-10 (Glorot-uniform weights, zero biases)."""
    from conformance.closed_loop.suite import FULL_TASKS, TASKS

    data = load_task("mlp_wide", 2, seed=0)
    shapes = {k: v.shape for k, v in data.init.items()}
    assert shapes == {
        "W1": (64, 512),
        "b1": (512,),
        "W2": (512, 512),
        "b2": (512,),
        "W3": (512, 10),
        "b3": (10,),
    }
    assert sum(v.size for v in data.init.values()) == 64 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10
    assert "mlp_wide" in FULL_TASKS and "mlp_wide" not in TASKS


def test_torch_wide_closed_loop_is_within_the_bound() -> None:
    """A few steps of the wide model in torch against the reference: the closed-loop grading
    (the bound of docs/conformance/closed_loop.md) accepts it at this width too."""
    pytest.importorskip("torch")
    rec = run_in_subprocess("torch", "mlp_wide", 5, "float64", 0)
    assert rec["error"] is None, rec["error"]
    case = closed_loop_cases([rec])[0]
    assert case["verdict"] in ("within_bound", "exact"), case
