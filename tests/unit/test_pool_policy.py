"""Adaptive idle timeout tiers, the request-rate meter and the warm-up planner (fake clock)."""

from __future__ import annotations

import pytest

from proxy.config import IdleTierConfig, PoolConfig
from proxy.pool import IdleTiers, RateMeter, WarmupPlanner

DEFAULT = IdleTiers([(10, 30.0), (100, 90.0)], 300.0)


@pytest.mark.parametrize(
    ("tiers", "rate", "timeout"),
    [
        (DEFAULT, 0.0, 30.0),
        (DEFAULT, 9.99, 30.0),
        (DEFAULT, 10.0, 90.0),  # "below": the bound itself is the next tier
        (DEFAULT, 50.0, 90.0),
        (DEFAULT, 100.0, 300.0),
        (DEFAULT, 1e6, 300.0),
        (IdleTiers([], 60.0), 0.0, 60.0),
        (IdleTiers([], 60.0), 1e6, 60.0),
        (IdleTiers([(1, 5.0)], 10.0), 0.5, 5.0),
        (IdleTiers([(1, 5.0)], 10.0), 1.0, 10.0),
    ],
)
def test_idle_tiers(tiers, rate, timeout):
    assert tiers.timeout_for(rate) == timeout


@pytest.mark.parametrize(
    ("cfg", "rate", "timeout"),
    [
        (PoolConfig(), 5.0, 30.0),
        (PoolConfig(), 20.0, 90.0),
        (PoolConfig(), 200.0, 300.0),
        (PoolConfig(adaptive_idle=False), 5.0, 60.0),  # the fixed idle_timeout
        (PoolConfig(adaptive_idle=False, idle_timeout=7.0), 500.0, 7.0),
        (PoolConfig(idle_tiers=(IdleTierConfig(1.0, 2.0),), idle_timeout_above=3.0), 0.5, 2.0),
        (PoolConfig(idle_tiers=(), idle_timeout_above=3.0), 0.5, 3.0),
    ],
)
def test_idle_tiers_from_config(cfg, rate, timeout):
    assert IdleTiers.from_config(cfg).timeout_for(rate) == timeout


@pytest.mark.parametrize(
    ("tiers", "above"),
    [([(10, 30.0), (10, 90.0)], 300.0), ([(100, 30.0), (10, 90.0)], 300.0), ([(0, 30.0)], 300.0),
     ([(10, 0.0)], 300.0), ([], 0.0)],
)
def test_idle_tiers_refuse_nonsense(tiers, above):
    with pytest.raises(ValueError):
        IdleTiers(tiers, above)


# --------------------------------------------------------------------------- rate meter


def test_rate_meter_steady_rate():
    meter = RateMeter(0.0)
    for i in range(1200):  # 20 req/s for 60s
        meter.record(i * 0.05)
    assert meter.rate(60.0) == pytest.approx(20.0, rel=0.06)
    assert meter.average(60.0) == pytest.approx(20.0, rel=0.03)


def test_rate_meter_at_boot_does_not_spike():
    meter = RateMeter(100.0)
    assert meter.rate(100.0) == 0.0 and meter.average(100.0) == 0.0
    meter.record(100.0)
    assert meter.rate(100.0) == 1.0  # one request over at least one bucket (1s)
    for i in range(9):
        meter.record(100.0 + 0.5 * (i + 1))  # 10 requests within 4.5s
    assert meter.rate(104.5) == pytest.approx(10 / 4.5)
    assert meter.average(104.5) == pytest.approx(10 / 4.5)


def test_rate_meter_surge_and_decay():
    meter = RateMeter(0.0)
    t = 0.0
    while t < 60.0:  # 2 req/s
        meter.record(t)
        t += 0.5
    while t < 70.0:  # then 40 req/s for 10s
        meter.record(t)
        t += 0.025
    assert meter.rate(70.0) == pytest.approx(40.0, rel=0.15)
    assert meter.average(70.0) < 10.0
    assert meter.rate(200.0) == 0.0 and meter.average(200.0) == 0.0


# --------------------------------------------------------------------------- warm-up planner

PLANS = [
    # (id, planner kwargs, to_open kwargs, expected)
    ("nothing to do by default", {}, {}, 0),
    ("keep min_idle warm", {"min_idle": 3}, {}, 3),
    ("min_idle counts idle and opening", {"min_idle": 5}, {"idle": 2, "opening": 1}, 2),
    ("min_idle already met", {"min_idle": 2}, {"idle": 3}, 0),
    ("never more than parallel opening", {"min_idle": 10}, {}, 4),
    ("parallel counts those already opening", {"min_idle": 10}, {"opening": 3}, 1),
    ("parallel full", {"min_idle": 10}, {"opening": 4}, 0),
    ("starting opens the target", {}, {"target": 3, "starting": True}, 3),
    ("starting, target below min_idle", {"min_idle": 2}, {"target": 1, "starting": True}, 2),
    ("starting, bounded by parallel", {}, {"target": 20, "starting": True}, 4),
    ("recovering opens the target", {}, {"target": 3, "recovering": True}, 3),
    ("recovering, some idle already", {}, {"target": 3, "recovering": True, "idle": 2}, 1),
    ("target ignored without a trigger", {}, {"target": 8}, 0),
    ("surge scales the target by rate/avg", {"parallel": 100}, {"target": 4, "rate": 30.0, "avg_rate": 10.0}, 12),
    ("surge rounds up", {"parallel": 100}, {"target": 3, "rate": 35.0, "avg_rate": 10.0}, 11),
    ("no surge below surge_factor", {"parallel": 100}, {"target": 4, "rate": 29.9, "avg_rate": 10.0}, 0),
    ("surge from no traffic takes the target", {}, {"target": 2, "rate": 5.0, "avg_rate": 0.0}, 2),
    ("tiny rates are no surge", {}, {"target": 2, "rate": 0.5, "avg_rate": 0.1}, 0),
    ("surge bounded by parallel", {}, {"target": 4, "rate": 30.0, "avg_rate": 10.0}, 4),
    ("surge minus idle and opening", {"parallel": 100}, {"target": 4, "rate": 30.0, "avg_rate": 10.0, "idle": 5,
                                                         "opening": 2}, 5),
    ("cap bounds the target", {"cap": 6, "parallel": 100}, {"target": 4, "rate": 30.0, "avg_rate": 10.0}, 6),
    ("cap bounds min_idle too", {"cap": 2, "min_idle": 5}, {}, 2),
    ("surge factor 5", {"surge_factor": 5.0, "parallel": 100}, {"target": 2, "rate": 40.0, "avg_rate": 10.0}, 0),
    ("surge and starting: the larger", {"parallel": 100}, {"target": 4, "rate": 30.0, "avg_rate": 10.0,
                                                          "starting": True}, 12),
]


@pytest.mark.parametrize(("planner_kw", "kw", "expected"), [c[1:] for c in PLANS], ids=[c[0] for c in PLANS])
def test_warmup_planner(planner_kw, kw, expected):
    planner = WarmupPlanner(**{"min_idle": 0, "parallel": 4, "surge_factor": 3.0, **planner_kw})
    args = {"now": 0.0, "idle": 0, "opening": 0, "target": 0, "rate": 0.0, "avg_rate": 0.0, "recovering": False,
            "starting": False, **kw}
    assert planner.to_open(**args) == expected


def test_warmup_reaches_the_target_in_waves():
    planner = WarmupPlanner(min_idle=0, parallel=4, surge_factor=3.0)
    idle = opening = 0
    waves = []
    while True:
        n = planner.to_open(0.0, idle, opening, 10, 0.0, 0.0, recovering=False, starting=True)
        if not n:
            break
        waves.append(n)
        idle, opening = idle + n, 0  # the wave connected
    assert waves == [4, 4, 2] and idle == 10


def test_from_config():
    planner = WarmupPlanner.from_config(PoolConfig())
    assert (planner.min_idle, planner.parallel, planner.surge_factor, planner.cap) == (0, 4, 3.0, 128)
    planner = WarmupPlanner.from_config(PoolConfig(min_idle=2, warmup_parallel=8, surge_factor=5.0))
    assert (planner.min_idle, planner.parallel, planner.surge_factor) == (2, 8, 5.0)


@pytest.mark.parametrize("kw", [{"min_idle": -1}, {"parallel": 0}, {"surge_factor": 0.5}, {"cap": -1}])
def test_planner_refuses_nonsense(kw):
    with pytest.raises(ValueError):
        WarmupPlanner(**{"min_idle": 0, "parallel": 4, "surge_factor": 3.0, **kw})
