"""The time deadlines are judged against: event time by partition, the wall clock once caught up.

Two clocks, one rule:

- **Event time**: each partition's watermark is the newest ``occurred_at`` read on it. Deadlines on
  the partition fire once the watermark, less the allowed lateness (events of different calls
  arrive a little out of order), has passed them. Replay and simulation use only this
  (``CRISIS_TIMER_CLOCK=event``), so a recorded hour replayed at full speed gives the live results.
- **Wall clock** (live, ``CRISIS_TIMER_CLOCK=wall``): a team that never arrives sends no event, so
  a ticker fires deadlines by the wall clock too, but only on partitions this worker has *read up
  to the end* (no lag), or whose watermark is within the lateness of the wall clock. A partition
  still behind (after an outage, or just taken over in a rebalance) may hold the very arrival that
  meets the deadline: it fires by its watermark until it has caught up, so partners never get a
  false breach after an outage. In live mode the watermark never runs ahead of the wall clock
  either, so a CAD clock running fast cannot breach a timer early.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


def wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ReadPosition:
    """How far a worker has read one of its partitions: the offset it will process next, and the end."""

    next_offset: int | None  # None: nothing processed or committed yet
    end_offset: int | None  # None: not known yet


def event_time_now(watermark: datetime, wall: datetime, lateness: timedelta, live: bool) -> datetime:
    """The time a partition's deadlines are judged against, from its watermark (capped by the wall clock live)."""
    return (min(watermark, wall) if live else watermark) - lateness


def caught_up_partitions(
    positions: Mapping[int, ReadPosition], watermarks: Mapping[int, datetime], wall: datetime, lateness: timedelta
) -> set[int]:
    """The partitions whose deadlines may fire by the wall clock: read to the end, or nearly live."""
    caught_up = set()
    for partition, position in positions.items():
        end, next_offset = position.end_offset, position.next_offset
        read_to_end = end is not None and (end == 0 or (next_offset is not None and next_offset >= end))
        watermark = watermarks.get(partition)
        if read_to_end or (watermark is not None and watermark >= wall - lateness):
            caught_up.add(partition)
    return caught_up
