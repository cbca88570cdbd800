"""Federated averaging with local AdamW: the reference's simulation, and torch's and optax's.

The reference simulation (:func:`conformance.distributed.federated.simulate`, written with
``adamw_ref.step``) is first checked against an independent executor of the specification
(:class:`adapters.reference.oracle.RefStepper`) in the cases where the protocol reduces to plain
AdamW runs; then each framework's FedAvg is graded against it, and the planted protocol bugs are
flagged and named.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from adapters.reference.oracle import RefStepper, arithmetic
from conformance.distributed import cases, problem
from conformance.distributed import federated as fd
from conformance.report import schema as rp


@pytest.fixture(autouse=True)
def _slow_needs_runslow(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("slow") and not (
        request.config.getoption("--runslow", default=False) or os.environ.get("ADAMW_RUNSLOW") == "1"
    ):
        pytest.skip("slow: run with --runslow")


def _ref_run(cfg: Any, p0: Mapping[str, Any], grads: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    r = RefStepper(cfg, p0, arithmetic("float64"))
    for g in grads:
        r.step(g)
    return r.params()


def _inputs(setup: fd.FedSetup) -> tuple[Any, dict[str, Any], list[list[Any]]]:
    cfg = problem.get(setup.scenario).config("torch")
    p0, streams = setup.streams(0)
    return cfg, p0, streams


@pytest.mark.parametrize("variant", ["local", "averaged"])
def test_one_client_keeping_its_state_is_one_uninterrupted_run(variant: str) -> None:
    setup = fd.FedSetup(clients=1, rounds=3, local_steps=2)
    cfg, p0, streams = _inputs(setup)
    trace = fd.simulate(cfg, p0, fd.open_loop(streams, setup, "float64"), setup, variant)
    for r in range(setup.rounds):
        want = _ref_run(cfg, p0, streams[0][: (r + 1) * setup.local_steps])
        for n, a in want.items():
            assert np.array_equal(trace.server[r][n], a), (variant, r, n)


def test_one_client_resetting_is_a_fresh_run_each_round() -> None:
    setup = fd.FedSetup(clients=1, rounds=3, local_steps=2)
    cfg, p0, streams = _inputs(setup)
    trace = fd.simulate(cfg, p0, fd.open_loop(streams, setup, "float64"), setup, "reset")
    start: Mapping[str, Any] = p0
    for r in range(setup.rounds):
        want = _ref_run(cfg, start, streams[0][r * setup.local_steps : (r + 1) * setup.local_steps])
        for n, a in want.items():
            assert np.array_equal(trace.server[r][n], a)
        start = want


def test_one_round_averages_the_clients_in_order() -> None:
    setup = fd.FedSetup(clients=3, rounds=1, local_steps=2)
    cfg, p0, streams = _inputs(setup)
    trace = fd.simulate(cfg, p0, fd.open_loop(streams, setup, "float64"), setup, "reset")
    ends = [_ref_run(cfg, p0, streams[k]) for k in range(3)]
    for n in p0:
        want = ((ends[0][n] + ends[1][n]) + ends[2][n]) / 3.0
        assert np.array_equal(trace.server[0][n], want)


def test_the_variants_differ_far_beyond_the_bound() -> None:
    """The protocols are distinguishable: each variant's server lies outside the others' bounds."""
    from conformance import compare as cmp

    setup = fd.FedSetup()
    runs = {v: fd.reference("torch", setup, v, "float32", 0) for v in fd.VARIANTS}
    for v, (cfg, _, tr) in runs.items():
        b = fd.fed_bounds(cfg, setup, v, "float32", 0, tr)
        for other, (_, _, tro) in runs.items():
            if other != v:
                assert cmp.compare(tr.server, tro.server, b, "float32").max_ratio > 10, (v, other)


def test_the_bound_covers_the_spec_in_float32() -> None:
    """The reference evaluated in binary32 (every operation rounded) lies within the bound of the
    binary64 simulation: the bound's own false-alarm check."""
    from conformance import compare as cmp

    setup = fd.FedSetup()
    for v in fd.VARIANTS:
        cfg, _, tr = fd.reference("optax", setup, v, "float32", 0)
        _, _, emu = fd.reference("optax", setup, v, "float32", 0, in_dtype=True)
        b = fd.fed_bounds(cfg, setup, v, "float32", 0, tr)
        assert cmp.compare(tr.server, emu.server, b, "float32").max_ratio <= 1, v


@pytest.fixture(scope="module", params=["torch", "optax"])
def fed_rows(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, Any]]:
    fw = str(request.param)
    pytest.importorskip("torch" if fw == "torch" else "optax")
    out = tmp_path_factory.mktemp(f"fed-{fw}")
    rows = cases.federated_cases(out, ["float32"], 0, 120, frameworks=[fw], plants=list(fd.PLANTS))
    return {
        r["implementation"] + ("+" + r["distributed"]["plant"] if "plant" in r["distributed"] else ""): r
        for r in rows
    }


def test_each_framework_runs_each_protocol_as_the_reference(fed_rows: dict[str, dict[str, Any]]) -> None:
    for v in fd.VARIANTS:
        row = fed_rows[v]
        assert row["verdict"] in rp.PASSING, (row["id"], row["bound"])
        assert row["distributed"]["clients"] == 3 and row["steps"] == 4


@pytest.mark.parametrize(("plant", "named"), [("moments_not_averaged", "local"), ("state_reset", "reset")])
def test_protocol_bugs_are_flagged_and_named(
    fed_rows: dict[str, dict[str, Any]], plant: str, named: str
) -> None:
    row = fed_rows[f"{fd.PLANTS[plant]}+{plant}"]
    assert row["verdict"] == "divergent" and row["bound"]["max_ratio"] > 10
    assert row["diagnosis"]["explained_by"] == f"variant={named}"


@pytest.mark.slow
def test_float64_protocols(tmp_path: Path) -> None:
    for fw in ("torch", "optax"):
        rows = cases.federated_cases(tmp_path / fw, ["float64"], 0, 120, frameworks=[fw])
        assert all(r["verdict"] in rp.PASSING for r in rows), [
            r["id"] for r in rows if r["verdict"] not in rp.PASSING
        ]


def test_setup_id_names_the_protocol() -> None:
    assert fd.FedSetup().id == "fed_basic-k3-e3-r4"
    assert dataclasses.replace(fd.FedSetup(), clients=5).id == "fed_basic-k5-e3-r4"
