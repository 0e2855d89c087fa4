"""The input of a fault-injection run: a seeded simulated city, with overrides and malformed records.

Beside the simulator's calls and lifecycles (``crisis.simulate.City``) the stream carries what a
real center sends and the suite must account for:

- **dispatcher overrides** (``triage.overridden``) of a few percent of calls, some lowering police
  involvement without an approver (refused: dead-lettered as ``override_refused``), each with a
  free-text reason that names a person, an address and the caller's number, as dispatchers write;
- **phone numbers in several formats** (``+13145550142``, ``(314) 555-0142``, ``314.555.0142``),
  so the personal-data scan looks for digits as well as the raw text;
- **malformed records** (``crisis.simulate.malformed_events``' shapes) at random places.

The same seed and size always give the same stream. The personal data the stream carries is known
(``phones``, ``free_texts``), so every output can be searched for it.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from crisis.simulate import City, SimulatedEvent, malformed_events
from domain.policy import Policy
from schemas.triage import Route

# Well in the past on any machine running this, and fixed: the same seed gives the same stream.
STREAM_START = datetime(2025, 1, 6, 6, 0, tzinfo=UTC)
EVENTS_PER_CALL = 3.6  # the simulator's average (received, dispatches, arrivals, close)
# A token in every free text, so a scan finds even a fragment of one.
FREE_TEXT_TOKEN = re.compile(r"FT[0-9a-f]{10}")
_NAMES = ("Quinta Brightwater", "Osric Fennimore", "Delphine Arkwright", "Tobias Quillfeather")
_STREETS = ("Larkspur Lane", "Wexford Row", "Cobblestone Court", "Marigold Terrace")
# Names and streets only free text uses: finding one means a piece of a free text got out.
FREE_TEXT_FRAGMENTS = _NAMES + _STREETS


@dataclass(frozen=True)
class ChaosStream:
    """The records to publish, in order, and the personal data hidden in them."""

    events: list[SimulatedEvent]
    call_prefix: str
    phones: frozenset[str]  # every caller_phone as sent
    free_texts: tuple[str, ...]  # every override reason as sent

    def count(self, kind: str) -> int:
        return sum(1 for event in self.events if event.type == kind)


def _formatted(phone: str, rng: random.Random) -> str:
    """The simulator's ``+1314555NNNN`` in one of the formats CAD systems send."""
    digits = phone[-10:]
    area, prefix, line = digits[:3], digits[3:6], digits[6:]
    return rng.choice((phone, f"({area}) {prefix}-{line}", f"{area}.{prefix}.{line}", f"+1 {area} {prefix} {line}"))


def build_stream(policy: Policy, events: int, seed: int, run_tag: str, override_share: float = 0.03,
                 malformed_per_10k: int = 10) -> ChaosStream:
    """``events`` records: the city's calls and lifecycles, overrides and malformed records, by event time."""
    rng = random.Random(f"chaos-{seed}")
    city = City(policy, seed=seed, start_at=STREAM_START, run_tag=run_tag)
    generated = city.events(math.ceil(events / EVENTS_PER_CALL) + 10)
    out: list[SimulatedEvent] = []
    phones: set[str] = set()
    free_texts: list[str] = []
    override_number = 0
    for event in generated:
        if event.type != "call.received":
            out.append(event)
            continue
        body = json.loads(event.value)
        body["caller_phone"] = _formatted(body["caller_phone"], rng)
        phones.add(body["caller_phone"])
        out.append(SimulatedEvent(event.occurred_at, event.key, json.dumps(body, separators=(",", ":")).encode(),
                                  event.type))
        if rng.random() < override_share:
            override_number += 1
            at = event.occurred_at + timedelta(seconds=rng.uniform(20, 600))
            reason = (f"Spoke with {rng.choice(_NAMES)} at {rng.randrange(2, 99)} {rng.choice(_STREETS)}, "
                      f"callback {body['caller_phone']}; ref FT{rng.getrandbits(40):010x}")
            free_texts.append(reason)
            override = {"type": "triage.overridden", "event_id": f"{event.key}-ovr", "call_id": event.key,
                        "occurred_at": at.isoformat(), "route": rng.choice(list(Route)).value,
                        "overridden_by": f"dispatcher-{rng.randrange(1, 40)}", "reason": reason}
            if rng.random() < 0.5:  # approved: may lower police involvement even with a safety flag
                override |= {"approved_by": f"sup-{rng.randrange(1, 9)}", "approved_by_role": "supervisor"}
            out.append(SimulatedEvent(at, event.key, json.dumps(override, separators=(",", ":")).encode(),
                                      "triage.overridden"))
    out.sort(key=lambda e: e.occurred_at)
    malformed = list(malformed_events(max(1, events * malformed_per_10k // 10_000), seed))
    kept = out[:events - len(malformed)]
    for index, bad in enumerate(malformed):
        position = rng.randrange(1, len(kept))
        at = kept[position - 1].occurred_at
        kept.insert(position, SimulatedEvent(at, f"malformed-{run_tag}-{index}", bad.value, "malformed"))
    # Needles of calls cut off at the end stay in: searching for more than was sent costs nothing.
    return ChaosStream(kept, city.call_prefix, frozenset(phones), tuple(free_texts))
