"""Fair turns at the generator for many clients: a bounded wait list, per-client limits, and
the next free slot going to the client served least recently.

A server that runs one generation at a time (the CPU's cores are all one request's) must not
let one client queue ten requests ahead of everyone else. `FairSlots` admits a request only
while its session and its address are under their limits and the wait list has room (else
`Busy` at once), and hands a free slot to the waiting request whose address, then session,
was served longest ago, so that another client waits at most one request behind a flood.

>>> slots = FairSlots(SlotLimits(running=1))
>>> ticket = slots.enter(session="s1", address="10.0.0.1", ready=True)
>>> ticket.wait(0.1)            # granted: nothing else runs
True
>>> ticket.release()

Written by hand: queue libraries order first come, first served, which is what a flood exploits.
No gradio here; the app maps sessions and addresses from its requests.
"""
from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

_REMEMBERED = 4096  # clients whose last turn is kept for the fairness order


@dataclass(frozen=True)
class SlotLimits:
    """How many requests run and wait, in all and per client."""

    running: int = 1  # generations at once
    waiting: int = 16  # requests waiting for a slot, all clients together
    per_session: int = 2  # waiting + running requests of one browser session or API client
    per_address: int = 6  # waiting + running requests from one network address

    def __post_init__(self) -> None:
        for name in ("running", "waiting", "per_session", "per_address"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be a whole number of at least 1, got {value!r}")


class Busy(RuntimeError):
    """A request refused at once: the client is over its limit or the wait list is full."""


class Ticket:
    """One request's place: `wait()` until granted, `release()` when done (also if never granted).

    A ticket counts against its client's limits from `enter` on, but is granted a slot only
    once it is ready (`enter(ready=False)` then `mark_ready()`: e.g. after its model loaded),
    so that nothing slow happens while holding a slot."""

    def __init__(self, slots: "FairSlots", session: str, address: str, order: int, ready: bool) -> None:
        self._slots, self.session, self.address, self.order = slots, session, address, order
        self.ready = ready
        self.granted = False
        self.released = False

    def mark_ready(self) -> None:
        self._slots._mark_ready(self)

    def wait(self, timeout: float | None = None) -> bool:
        """True once this request holds a slot; False if `timeout` passed first."""
        return self._slots._wait(self, timeout)

    @property
    def position(self) -> int:
        """0 while running, else how many waiting requests go first (1 = next)."""
        return self._slots._position(self)

    def release(self) -> None:
        self._slots._release(self)

    def __enter__(self) -> "Ticket":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class FairSlots:
    """Thread-safe slots for generation; see the module docstring."""

    def __init__(self, limits: SlotLimits | None = None) -> None:
        self.limits = limits or SlotLimits()
        self._cond = threading.Condition()
        self._waiting: list[Ticket] = []
        self._running: list[Ticket] = []
        self._served: OrderedDict[tuple[str, str], float] = OrderedDict()  # ("a"|"s", key) -> last turn
        self._counter = itertools.count()

    def enter(self, *, session: str | None, address: str | None, ready: bool = False) -> Ticket:
        """A place in line, or `Busy` naming the limit that refused it."""
        session, address = session or "", address or ""
        lim = self.limits
        with self._cond:
            mine = [t for t in (*self._running, *self._waiting) if t.session == session]
            if len(mine) >= lim.per_session:
                raise Busy(f"busy: you already have {len(mine)} requests waiting or running "
                           f"(at most {lim.per_session}); wait for one to finish "
                           f"你已有 {len(mine)} 个请求在排队或生成中，请等待完成")
            here = [t for t in (*self._running, *self._waiting) if t.address == address]
            if len(here) >= lim.per_address:
                raise Busy(f"busy: {len(here)} requests from your network address are waiting or running "
                           f"(at most {lim.per_address}); try again shortly 来自同一地址的请求过多，请稍后再试")
            if len(self._waiting) >= lim.waiting:
                raise Busy(f"busy: {len(self._waiting)} requests are waiting already; try again in a minute "
                           f"服务器繁忙，请稍后再试")
            ticket = Ticket(self, session, address, next(self._counter), ready)
            self._waiting.append(ticket)
            self._grant()
            return ticket

    def counts(self) -> tuple[int, int]:
        """(running, waiting), for status lines and tests."""
        with self._cond:
            return len(self._running), len(self._waiting)

    # -- internals (under the condition's lock) -------------------------------------------------
    def _turn_key(self, t: Ticket) -> tuple[float, float, int]:
        return (self._served.get(("a", t.address), 0.0), self._served.get(("s", t.session), 0.0), t.order)

    def _grant(self) -> None:
        changed = False
        while len(self._running) < self.limits.running:
            ready = [t for t in self._waiting if t.ready]
            if not ready:
                break
            ticket = min(ready, key=self._turn_key)
            self._waiting.remove(ticket)
            self._running.append(ticket)
            ticket.granted = True
            now = time.monotonic()
            for key in (("a", ticket.address), ("s", ticket.session)):
                self._served[key] = now
                self._served.move_to_end(key)
            while len(self._served) > _REMEMBERED:
                self._served.popitem(last=False)
            changed = True
        if changed:
            self._cond.notify_all()

    def _mark_ready(self, ticket: Ticket) -> None:
        with self._cond:
            ticket.ready = True
            self._grant()

    def _wait(self, ticket: Ticket, timeout: float | None) -> bool:
        with self._cond:
            if ticket.released:
                return False
            return self._cond.wait_for(lambda: ticket.granted, timeout)

    def _position(self, ticket: Ticket) -> int:
        with self._cond:
            if ticket.granted or ticket.released:
                return 0
            ahead = sorted((t for t in self._waiting if t.ready or t is ticket), key=self._turn_key)
            return ahead.index(ticket) + 1 if ticket in ahead else 0

    def _release(self, ticket: Ticket) -> None:
        with self._cond:
            if ticket.released:
                return
            ticket.released = True
            if ticket in self._running:
                self._running.remove(ticket)
            elif ticket in self._waiting:
                self._waiting.remove(ticket)
            self._grant()
            self._cond.notify_all()
