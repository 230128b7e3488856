"""The pool's decisions, with an injected clock: no processes, no sockets, no waiting."""

from __future__ import annotations

import pytest

from lambdapool import Pool
from lambdapool.emulator.pool._core import Dispatch, Fail, PoolCore, Reject, RejectReason, Retire, Start


def started_pool(pool: Pool) -> PoolCore:
    """A core whose floor pipelines have all started."""
    core = PoolCore(pool)
    for action in core.load():
        assert isinstance(action, Start)
        assert core.ready(action.pipeline_id, 0.0) == []
    return core


def test_load_starts_floor_pipelines() -> None:
    assert PoolCore(Pool(floor=3, cruise=3, ceil=4)).load() == [Start(1), Start(2), Start(3)]
    assert PoolCore(Pool(floor=0, cruise=0, ceil=1)).load() == []


def test_a_free_pipeline_serves_at_once_most_recently_used_first() -> None:
    core = started_pool(Pool(floor=2, cruise=2, ceil=2))
    assert core.arrive("a", 0.0) == [Dispatch("a", 2, cold=False)]
    assert core.arrive("b", 0.0) == [Dispatch("b", 1, cold=False)]
    assert core.done(1, 1.0) == []
    assert core.done(2, 2.0) == []
    assert core.arrive("c", 3.0) == [Dispatch("c", 2, cold=False)]  # 2 was used last


def test_a_new_pipeline_is_started_for_a_request_while_below_ceil_and_serves_it_cold() -> None:
    core = started_pool(Pool(floor=1, cruise=1, ceil=2))
    core.arrive("a", 0.0)
    assert core.arrive("b", 0.0) == [Start(2)]
    assert core.snapshot().starting == 1
    assert core.ready(2, 0.1) == [Dispatch("b", 2, cold=True)]


def test_a_request_joins_a_floor_pipeline_that_is_still_starting() -> None:
    core = PoolCore(Pool(floor=1, cruise=1, ceil=4))
    assert core.load() == [Start(1)]
    assert core.arrive("a", 0.0) == []  # no second pipeline: it waits for the one starting
    assert core.ready(1, 0.2) == [Dispatch("a", 1, cold=True)]


def test_requests_queue_in_fifo_order_when_ceil_pipelines_are_busy() -> None:
    core = started_pool(Pool(floor=1, cruise=1, ceil=1, queue=2, timeout_ms=1000))
    core.arrive("a", 0.0)
    assert core.arrive("b", 0.1) == []
    assert core.arrive("c", 0.2) == []
    assert core.queued_requests() == ["b", "c"]
    assert core.done(1, 0.3) == [Dispatch("b", 1, cold=False)]
    assert core.done(1, 0.4) == [Dispatch("c", 1, cold=False)]


def test_queue_rejects_when_full() -> None:
    core = started_pool(Pool(floor=1, cruise=1, ceil=1, queue=1))
    core.arrive("a", 0.0)
    core.arrive("b", 0.0)
    assert core.arrive("c", 0.0) == [Reject("c", RejectReason.QUEUE_FULL)]


def test_queue_zero_throttles_at_once() -> None:
    core = started_pool(Pool(floor=1, cruise=1, ceil=1, queue=0))
    core.arrive("a", 0.0)
    assert core.arrive("b", 0.0) == [Reject("b", RejectReason.QUEUE_FULL)]


def test_queued_requests_time_out_after_timeout_ms() -> None:
    core = started_pool(Pool(floor=1, cruise=1, ceil=1, queue=3, timeout_ms=500))
    core.arrive("a", 0.0)
    core.arrive("b", 0.0)
    core.arrive("c", 0.3)
    assert core.deadline_of("b") == 0.5 and core.deadline_of("a") is None
    assert core.expire(0.49) == []
    assert core.expire(0.5) == [Reject("b", RejectReason.QUEUE_TIMEOUT)]
    # A pipeline freed after c's deadline does not serve it: c is rejected first.
    assert core.done(1, 0.9) == [Reject("c", RejectReason.QUEUE_TIMEOUT)]
    assert core.snapshot().idle == 1


def test_pipelines_above_cruise_retire_once_nothing_is_pending_longest_idle_first() -> None:
    core = started_pool(Pool(floor=1, cruise=2, ceil=4, queue=4))
    for request in "abcd":
        for action in core.arrive(request, 0.0):
            if isinstance(action, Start):
                core.ready(action.pipeline_id, 0.0)
    assert core.snapshot().busy == 4
    assert core.done(3, 1.0) == []
    assert core.done(1, 2.0) == []
    assert core.done(4, 3.0) == []
    assert core.snapshot().idle == 3
    # The last pending request completes: retire down to cruise, the longest idle (3, then 1) first.
    assert core.done(2, 4.0) == [Retire(3), Retire(1)]
    assert core.snapshot().idle == 2


def test_with_a_grace_pipelines_above_cruise_stay_through_short_idle_moments() -> None:
    core = PoolCore(Pool(floor=1, cruise=1, ceil=3, queue=4), cruise_grace_s=1.0)
    for action in core.load():
        core.ready(action.pipeline_id, 0.0)
    for request in "abc":
        for action in core.arrive(request, 0.0):
            if isinstance(action, Start):
                core.ready(action.pipeline_id, 0.0)
    assert [core.done(pipeline, 0.1) for pipeline in (1, 2, 3)] == [[], [], []]  # idle for a moment only
    assert core.tick(0.5) == []
    assert core.arrive("d", 0.6) == [Dispatch("d", 3, cold=False)]  # a warm pipeline, no cold start
    assert core.done(3, 0.7) == []
    assert core.tick(1.05) == []  # 1 and 2 have been idle since 0.1: not for a whole second yet
    core.arrive("e", 1.06)
    assert core.tick(1.2) == []  # past their grace, but 'e' runs: the burst is not over
    assert core.done(3, 1.3) == [Retire(1), Retire(2)]  # the longest idle first, down to cruise
    assert core.snapshot().idle == 1


def test_retirement_never_goes_below_floor_and_waits_for_the_queue() -> None:
    core = started_pool(Pool(floor=2, cruise=2, ceil=3, queue=1))
    core.arrive("a", 0.0)
    core.arrive("b", 0.0)
    core.ready(*[a.pipeline_id for a in core.arrive("c", 0.0)], 0.0)
    core.arrive("d", 0.0)
    assert core.done(1, 1.0) == [Dispatch("d", 1, cold=False)]
    assert core.done(2, 1.0) == []  # d still runs: nothing retires yet
    assert core.done(3, 1.0) == []
    assert core.done(1, 1.0) == [Retire(2)]
    assert core.snapshot().idle == 2


def test_a_lost_pipeline_is_replaced_below_cruise_or_when_requests_wait() -> None:
    core = started_pool(Pool(floor=1, cruise=1, ceil=1, queue=2))
    core.arrive("a", 0.0)
    core.arrive("b", 0.0)
    assert core.lost(1, 1.0) == [Start(2)]
    assert core.ready(2, 1.1) == [Dispatch("b", 2, cold=True)]


def test_a_lost_pipeline_above_cruise_is_not_replaced() -> None:
    core = started_pool(Pool(floor=0, cruise=0, ceil=2, queue=0))
    core.ready(*[a.pipeline_id for a in core.arrive("a", 0.0)], 0.0)
    assert core.lost(1, 1.0) == []
    assert core.snapshot().starting + core.snapshot().idle + core.snapshot().busy == 0


def test_an_idle_pipeline_lost_is_removed_from_the_free_list() -> None:
    core = started_pool(Pool(floor=2, cruise=2, ceil=2))
    assert core.lost(2, 0.0) == [Start(3)]
    assert core.arrive("a", 0.0) == [Dispatch("a", 1, cold=False)]


def test_a_failed_start_fails_its_request_without_restarting_floor() -> None:
    core = PoolCore(Pool(floor=1, cruise=1, ceil=1, queue=1))
    core.load()
    core.arrive("a", 0.0)
    core.arrive("b", 0.0)
    # The floor pipeline fails: a fails with it; b, queued, gets one new attempt of its own.
    assert core.start_failed(1, 0.5) == [Fail("a", 1), Start(2)]
    assert core.start_failed(2, 0.6) == [Fail("b", 2)]
    assert core.queued_requests() == []
    assert core.snapshot().starting == 0


def test_scale_to_zero_cold_starts_every_first_call() -> None:
    core = PoolCore(Pool(floor=0, cruise=0, ceil=1, queue=0))
    assert core.load() == []
    assert core.arrive("a", 0.0) == [Start(1)]
    assert core.ready(1, 0.1) == [Dispatch("a", 1, cold=True)]
    assert core.done(1, 0.2) == [Retire(1)]


@pytest.mark.parametrize("request_count", [1, 5, 20])
def test_every_request_is_dispatched_or_rejected_exactly_once(request_count: int) -> None:
    core = started_pool(Pool(floor=1, cruise=1, ceil=3, queue=5, timeout_ms=100))
    outcomes: dict[str, object] = {}
    starting: list[int] = []

    def record(actions) -> None:
        for action in actions:
            if isinstance(action, Start):
                starting.append(action.pipeline_id)
            elif isinstance(action, (Dispatch, Reject)):
                assert action.request_id not in outcomes
                outcomes[action.request_id] = action

    for index in range(request_count):
        record(core.arrive(f"r{index}", 0.0))
    while starting:
        record(core.ready(starting.pop(), 0.01))
    now = 0.02
    while len(outcomes) < request_count:
        busy = [a.pipeline_id for a in outcomes.values() if isinstance(a, Dispatch)]
        record(core.done(busy[0], now) if core.snapshot().busy else core.expire(now))
        now += 0.05
    assert sorted(outcomes) == sorted(f"r{index}" for index in range(request_count))


def test_a_scale_to_zero_pool_keeps_its_last_pipeline_warm_for_keep_warm_s() -> None:
    core = PoolCore(Pool(floor=0, cruise=0, ceil=2), keep_warm_s=300.0)
    assert core.arrive("a", 0.0) == [Start(1)]
    assert core.ready(1, 0.5) == [Dispatch("a", 1, cold=True)]
    assert core.done(1, 1.0) == []  # kept warm, not retired at once
    assert core.tick(200.0) == []
    assert core.arrive("b", 250.0) == [Dispatch("b", 1, cold=False)]  # a warm start, as on Lambda
    assert core.done(1, 251.0) == []
    assert core.tick(550.9) == []
    assert core.tick(551.0) == [Retire(1)]  # 300 s after its last call
    assert core.arrive("c", 600.0) == [Start(2)]  # cold again


def test_keep_warm_keeps_one_pipeline_only_and_nothing_without_it() -> None:
    core = PoolCore(Pool(floor=0, cruise=0, ceil=2), keep_warm_s=300.0)
    core.arrive("a", 0.0)
    core.arrive("b", 0.0)
    core.ready(1, 0.1)
    core.ready(2, 0.1)
    assert core.done(1, 1.0) == []  # b still runs: nothing is retired while a call is pending
    assert core.done(2, 2.0) == [Retire(1)]  # the longest idle goes, the last used stays warm
    cold = PoolCore(Pool(floor=0, cruise=0, ceil=1))
    cold.arrive("a", 0.0)
    cold.ready(1, 0.1)
    assert cold.done(1, 1.0) == [Retire(1)]  # keep_warm_s=0: retired at once
    assert cold.tick(1000.0) == []
