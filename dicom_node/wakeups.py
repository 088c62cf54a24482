"""Wake-ups between the node's parts, so a study moves on as soon as it can rather than at the next poll.

The node's database stays the only record of what is due: a wake-up carries nothing, it only ends a wait
early. Every waiter still wakes on its own after its poll interval, so a wake-up that is missed (a
worker being restarted, a Celery worker on another machine) delays work by that interval and loses
nothing.

- `received`: the receiver tells the scheduler an instance arrived; the scheduler then sleeps until the
  earliest receiving study falls quiet, instead of finding it at its next tick.
- `jobs`: the scheduler tells the local workers it queued studies.
- `deliveries`: a local worker (or the Celery collector) tells the sender it committed results.

Polls alone would leave a study waiting up to a poll interval at each of these three hand-overs.
"""

from __future__ import annotations

import multiprocessing
import threading
from dataclasses import dataclass
from typing import Protocol


class Signal(Protocol):
    """A `threading.Event` or a `multiprocessing` Event: both wake every waiter."""

    def set(self) -> None: ...

    def clear(self) -> None: ...

    def wait(self, timeout: float | None = None) -> bool: ...


@dataclass(frozen=True)
class Wakeups:
    received: Signal
    jobs: Signal  # crosses into spawned worker processes
    deliveries: Signal  # crosses into spawned worker processes

    @classmethod
    def create(cls) -> Wakeups:
        context = multiprocessing.get_context("spawn")
        return cls(threading.Event(), context.Event(), context.Event())

    def wake_all(self) -> None:
        """End every wait at once (the node is stopping)."""
        for signal in (self.received, self.jobs, self.deliveries):
            signal.set()


def wait_for(signal: Signal, timeout: float) -> None:
    """Sleep until `signal` is set or `timeout` passes, then clear it. Callers check the database after
    this returns, so a signal set between that check and this wait ends the wait at once, and one set
    while clearing is covered by the check that follows."""
    signal.wait(timeout)
    signal.clear()
