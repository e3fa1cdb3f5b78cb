"""FairSlots: per-client limits, a bounded wait list, and turns that go to the client served
least recently, with real threads."""
from __future__ import annotations

import threading
import time

import pytest

from textgen.slots import Busy, FairSlots, SlotLimits


def test_limits_are_checked():
    with pytest.raises(ValueError, match="per_session: must be a whole number of at least 1"):
        SlotLimits(per_session=0)


def test_one_session_may_hold_two_places_then_is_refused_at_once():
    slots = FairSlots(SlotLimits(running=1, waiting=16, per_session=2, per_address=6))
    first = slots.enter(session="a", address="1.1.1.1", ready=True)
    second = slots.enter(session="a", address="1.1.1.1", ready=True)
    started = time.monotonic()
    with pytest.raises(Busy, match="you already have 2 requests waiting or running"):
        slots.enter(session="a", address="1.1.1.1", ready=True)
    assert time.monotonic() - started < 0.1
    assert first.wait(0) and not second.wait(0)
    first.release()
    assert second.wait(1)
    slots.enter(session="a", address="1.1.1.1").release()  # a place is free again


def test_one_address_is_capped_across_sessions():
    slots = FairSlots(SlotLimits(running=1, waiting=16, per_session=2, per_address=3))
    for i in range(3):
        slots.enter(session=f"s{i}", address="9.9.9.9")
    with pytest.raises(Busy, match="from your network address"):
        slots.enter(session="s-new", address="9.9.9.9")
    slots.enter(session="elsewhere", address="8.8.8.8")


def test_the_wait_list_is_bounded():
    slots = FairSlots(SlotLimits(running=1, waiting=2))
    slots.enter(session="a", address="a", ready=True)  # runs
    slots.enter(session="b", address="b", ready=True)
    slots.enter(session="c", address="c", ready=True)
    with pytest.raises(Busy, match="2 requests are waiting already"):
        slots.enter(session="d", address="d", ready=True)
    assert slots.counts() == (1, 2)


def test_a_flood_delays_another_client_by_at_most_one_request():
    slots = FairSlots(SlotLimits(running=1, waiting=16, per_session=2, per_address=16))
    flood = [slots.enter(session=f"a{i}", address="attacker", ready=True) for i in range(8)]
    other = slots.enter(session="b", address="someone", ready=True)
    assert flood[0].wait(0)
    assert other.position == 1  # next, ahead of seven older requests from one address
    flood[0].release()
    assert other.wait(0)
    other.release()
    assert flood[1].wait(0)  # then the flood resumes in its own order


def test_within_one_address_sessions_take_turns():
    slots = FairSlots(SlotLimits(running=1, waiting=16, per_session=2, per_address=16))
    a1 = slots.enter(session="a", address="lan", ready=True)
    a2 = slots.enter(session="a", address="lan", ready=True)
    b1 = slots.enter(session="b", address="lan", ready=True)
    a1.release()
    assert b1.wait(0) and not a2.wait(0)


def test_a_ticket_not_ready_is_passed_over_and_a_released_one_leaves_the_line():
    slots = FairSlots(SlotLimits(running=1, waiting=16))
    running = slots.enter(session="r", address="r", ready=True)
    loading = slots.enter(session="l", address="l")  # its model still loads
    ready = slots.enter(session="x", address="x", ready=True)
    running.release()
    assert ready.wait(0) and not loading.wait(0)
    gone = slots.enter(session="g", address="g", ready=True)
    gone.release()  # the client went away while waiting
    assert slots.counts() == (1, 1)
    ready.release()
    loading.mark_ready()
    assert loading.wait(0)


def test_waiting_threads_are_woken_in_turn():
    slots = FairSlots(SlotLimits(running=1, waiting=16, per_session=1))
    order, threads = [], []
    holder = slots.enter(session="h", address="h", ready=True)

    def user(name: str) -> None:
        with slots.enter(session=name, address=name, ready=True) as ticket:
            assert ticket.wait(5)
            order.append(name)
            time.sleep(0.01)

    for name in ("u1", "u2", "u3"):
        threads.append(threading.Thread(target=user, args=(name,)))
        threads[-1].start()
        time.sleep(0.05)
    holder.release()
    for t in threads:
        t.join(5)
    assert order == ["u1", "u2", "u3"]
    assert slots.counts() == (0, 0)
