"""The scenarios, one module each, and their sizes: ``FULL`` for ``crisis chaos``, ``SHORT`` for ``make test``.

Every scenario is ``async def run(services, size, seed) -> RunOutcome``: it runs on the services it
breaks (``crisis.chaos.environment.ChaosServices``), injects ``size.faults`` faults at moments chosen
from ``seed``, and returns the checked outcome (``crisis.chaos.run.RunOutcome``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from crisis.chaos.environment import ChaosServices
from crisis.chaos.proxy import CutMode, TcpProxy
from crisis.chaos.run import ChaosRun, RunOutcome


@dataclass(frozen=True)
class Size:
    """How big a run is: input events, faults, how long an outage lasts, hostile records."""

    events: int
    faults: int
    outage_seconds: float
    hostile_examples: int
    publish_rate: float = 2500.0  # the fastest input pace
    timeout_seconds: float = 1200.0
    fault_time_factor: float = 1.0  # < 1: trust faults to be over sooner (short runs, shorter outages)

    def pace(self, faults: int, seconds_per_fault: float) -> float:
        """An input pace that keeps input arriving until the last fault is over (each fault meets
        fresh work, so its recovery can be measured), never faster than ``publish_rate``."""
        feed_seconds = faults * seconds_per_fault * self.fault_time_factor + 10.0
        return min(self.publish_rate, self.events / max(10.0, feed_seconds))


FULL = Size(events=100_000, faults=6, outage_seconds=30.0, hostile_examples=1500)
SHORT = Size(events=4_000, faults=2, outage_seconds=5.0, hostile_examples=150, timeout_seconds=420.0,
             fault_time_factor=0.6)

Scenario = Callable[[ChaosServices, Size, int], Awaitable[RunOutcome]]


def fault_moments(seed: int, count: int, low: float = 0.08, high: float = 0.85) -> list[float]:
    """``count`` random shares of the input, spread out: fault i happens once that much is stored."""
    rng = random.Random(f"moments-{seed}")
    width = (high - low) / count
    return [low + width * (i + rng.uniform(0.1, 0.9)) for i in range(count)]


# A cut line once as a network partition (``blackhole``: nothing answers), once as a host gone away
# (``reset``: every connection refused).
CUT_MODES: tuple[CutMode, ...] = ("blackhole", "reset")


async def cut_at_moments(chaos: ChaosRun, proxy: TcpProxy, size: Size, seed: int, what: str) -> RunOutcome:
    """Run ``chaos``, cutting the worker's line to ``what`` through ``proxy`` in each of ``CUT_MODES`` for
    ``size.outage_seconds`` at seeded moments, each cut restored and recovered from before the next."""
    try:
        await chaos.prepare()
        for index, share in enumerate(fault_moments(seed, len(CUT_MODES))):
            mode = CUT_MODES[index % len(CUT_MODES)]
            await chaos.reached(share)
            fault = chaos.begin_fault(f"worker cut off from {what} ({mode}) for {size.outage_seconds:g} s")
            proxy.cut(mode)
            await asyncio.sleep(size.outage_seconds)  # the length of the outage, not a guess at speed
            proxy.restore()
            await chaos.end_fault(fault)
            await chaos.wait_recovered(fault)
        return await chaos.finish()
    finally:
        await chaos.close()
        proxy.stop()
