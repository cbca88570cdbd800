"""Schedules: values at a few counts derived by hand, JSON round trips, and which count the first
update sees (pre- vs post-increment)."""

from __future__ import annotations

import math

import pytest

from adamw_ref import (
    AdamWConfig,
    Constant,
    Cosine,
    Delayed,
    LinearWarmup,
    ScheduleCount,
    StepDecay,
    UserSchedule,
    WarmupCosine,
    init,
    schedule_from_json,
    step,
)


def test_constant() -> None:
    assert [Constant(0.5)(c) for c in (0, 1, 10**9)] == [0.5, 0.5, 0.5]


def test_linear_warmup_by_hand() -> None:
    # eta(c) = start + (1 - start) min(1, c/W); W = 4, start = 0: 0, 1/4, 1/2, 3/4, 1, 1
    s = LinearWarmup(4)
    assert [s(c) for c in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    # start = 1/2: 1/2, 5/8, 3/4, 7/8, 1
    s = LinearWarmup(4, start=0.5)
    assert [s(c) for c in range(5)] == [0.5, 0.625, 0.75, 0.875, 1.0]
    assert LinearWarmup(0)(0) == 1.0


def test_cosine_by_hand() -> None:
    # eta(c) = f + (1-f)(1 + cos(pi c/T))/2, T = 4, f = 0: 1, (1 + 1/sqrt2)/2, 1/2, (1-1/sqrt2)/2, 0
    s = Cosine(4)
    r = 1 / math.sqrt(2)
    expected = [1.0, (1 + r) / 2, 0.5, (1 - r) / 2, 0.0, 0.0]
    for c, e in enumerate(expected):
        assert s(c) == pytest.approx(e, abs=1e-15)
    # final = 0.1: midpoint 0.1 + 0.9/2 = 0.55; after T stays 0.1
    assert Cosine(4, final=0.1)(2) == pytest.approx(0.55, abs=1e-15)
    assert Cosine(4, final=0.1)(100) == pytest.approx(0.1, abs=1e-15)


def test_warmup_cosine_by_hand() -> None:
    # W = 2, T = 6: c/W for c < 2 (0, 1/2); then cosine over 4 steps from c = 2:
    # c=2 -> 1, c=4 -> 1/2, c=6 -> 0
    s = WarmupCosine(2, 6)
    assert s(0) == 0.0 and s(1) == 0.5 and s(2) == 1.0
    assert s(4) == pytest.approx(0.5, abs=1e-15)
    assert s(6) == pytest.approx(0.0, abs=1e-15) and s(60) == pytest.approx(0.0, abs=1e-15)


def test_step_decay_by_hand() -> None:
    # gamma^(c // S), S = 3, gamma = 1/2: 1,1,1,1/2,1/2,1/2,1/4
    s = StepDecay(3, gamma=0.5)
    assert [s(c) for c in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]


def test_delayed_by_hand() -> None:
    # the seeds' "decay delayed until after warmup": 0 for c < D, then `then`
    s = Delayed(until=3, then=StepDecay(4, gamma=0.5))
    assert [s(c) for c in range(9)] == [0, 0, 0, 1, 0.5, 0.5, 0.5, 0.5, 0.25]
    assert [Delayed(2)(c) for c in range(4)] == [0, 0, 1, 1]


def test_user_schedule() -> None:
    s = UserSchedule(lambda c: 1.0 / (1 + c), name="inv")
    assert [s(c) for c in range(3)] == [1.0, 0.5, 1 / 3]


@pytest.mark.parametrize(
    "sched",
    [
        Constant(0.3),
        LinearWarmup(5, 0.1),
        Cosine(7, 0.2),
        WarmupCosine(2, 9, 0.05),
        StepDecay(4, 0.3),
        Delayed(3, Cosine(10)),
    ],
)
def test_json_roundtrip(sched: object) -> None:
    back = schedule_from_json(sched.to_json())  # type: ignore[attr-defined]
    assert back == sched
    assert [back(c) for c in range(12)] == [sched(c) for c in range(12)]  # type: ignore[operator]


def first_update(count: ScheduleCount) -> float:
    # lr = 1, LinearWarmup(2): eta(0) = 0, eta(1) = 1/2. With beta1 = 1/2, beta2 = 3/4, eps = 1/4,
    # g = 3/4 from rest, u = 3/4 (see test_ref_hand), wd = 0: theta1 = 1 - eta * 3/4.
    cfg = AdamWConfig(
        lr=1.0,
        beta1=0.5,
        beta2=0.75,
        eps=0.25,
        weight_decay=0.0,
        lr_schedule=LinearWarmup(2),
        schedule_count=count,
    )
    new, _ = step({"w": [1.0]}, {"w": [0.75]}, init({"w": [1.0]}, cfg), cfg)
    return new["w"][0]


def test_schedule_count_changes_the_first_eta() -> None:
    assert first_update(ScheduleCount.PRE_INCREMENT) == 1.0  # eta(0) = 0: no move
    assert first_update(ScheduleCount.POST_INCREMENT) == 1.0 - 0.5 * 0.75  # eta(1) = 1/2


def test_wd_schedule_counts_like_lr_schedule() -> None:
    # Delayed(1) on the decay, pre-increment: update 1 (c = 0) has no decay, update 2 (c = 1) has.
    # lr = 1/8, wd = 1/2 -> s = 1/16; zero gradient: theta stays 1, then 15/16.
    cfg = AdamWConfig(lr=0.125, weight_decay=0.5, wd_schedule=Delayed(1))
    p = {"w": [1.0]}
    s = init(p, cfg)
    p, s = step(p, {"w": [0.0]}, s, cfg)
    assert p["w"] == (1.0,)
    p, s = step(p, {"w": [0.0]}, s, cfg)
    assert p["w"] == (15 / 16,)
