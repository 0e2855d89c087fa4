"""The outcomes report as data: every figure with its definition, counts suppressed, shares derived.

Pure: it takes the counts (from the daily aggregates), the response-time statistics and the repeat
contacts (computed from the facts at report time) and returns a ``Report`` that the renderers
(``crisis.report``) turn into Markdown, CSV, JSON or HTML. Suppression (``domain.suppression``)
runs over every count of the report at once, with every relation between them stated as a line, so
no displayed figure anywhere in the report lets a suppressed one be computed.

Tables of counts are keyed by an id: ``all`` (the whole range), ``<by>:<value>`` for the chosen
breakdown (``day:2026-11-03``, ``week:2026-11-02``, ``month:2026-11-01``, ``district:d1``,
``center:stl-911``), ``route:<route>``, ``hour:<00-23>`` and the periods of routes over time
(the breakdown's own periods, or weeks).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from domain.outcome_definitions import PROGRAM_ROUTES, UNSERVED_REASONS, DispositionGroup, ProgramRoute, Status
from domain.outcomes import COMPLETED_LINKAGES, FOLLOWUP_STATUSES, FOLLOWUP_WINDOWS, RESPONSES
from domain.suppression import DEFAULT_THRESHOLD, Line, sensitive, suppress

# Minutes from the team's request to its arrival: the histogram's bins (the last is open-ended).
ARRIVAL_BINS = (0, 5, 10, 15, 20, 25, 30, 45, 60)
INTERVALS = {
    "dispatch_to_arrival": ("Dispatch to arrival", "from the first co-responder unit.dispatched to the first "
                            "co-responder unit.arrived (calls whose dispatch was recorded before the arrival)"),
    "request_to_arrival": ("Request to arrival", "from the decision that requested the team (the call's "
                           "call.received, or the override that routed it to the team) to the first co-responder "
                           "unit.arrived"),
    "on_scene": ("Time on scene", "from the first co-responder unit.arrived to call.closed"),
}


@dataclass(frozen=True)
class Row:
    """One figure of a section: a count (``measure``), or a share of two counts, with its definition."""

    key: str
    label: str
    definition: str
    share_of: str | None = None  # the count it is a share of ("sum:a+b" for a sum of counts)


@dataclass(frozen=True)
class Stat:
    """Exact statistics of one interval over the calls of a group: count, median and 90th percentile (s)."""

    n: int
    median: float | None
    p90: float | None


@dataclass
class Figure:
    """One displayed value: a count, a share (percent) or seconds; ``None`` with ``suppressed`` or ``no_data``."""

    value: float | int | None
    suppressed: bool = False
    no_data: bool = False


@dataclass
class Section:
    key: str
    title: str
    definition: str
    rows: list[Row]
    figures: dict[str, dict[str, Figure]] = field(default_factory=dict)  # row key -> column -> figure


@dataclass
class Report:
    """Everything a rendering shows; ``suppressed`` lists every suppressed count cell (``table|measure``)."""

    start: date
    end: date
    by: str
    timezone: str
    threshold: int
    columns: list[str]  # "all" then the breakdown's table ids, in order
    sections: list[Section]
    hours: dict[str, dict[str, Figure]]  # "hour:HH" -> measure -> figure
    days: dict[str, dict[str, Figure]]  # routes over time: "<period>:DATE" -> route measure -> figure
    routes: dict[str, dict[str, Figure]]  # "route:R" -> measure -> figure
    arrival: dict[str, Figure]  # "bin:MMM-MMM" (minutes from request to arrival) -> calls
    suppressed: list[str]
    cells: int
    meta: dict[str, Any] = field(default_factory=dict)


def _c(key: str, label: str, definition: str, share_of: str | None = None) -> Row:
    return Row(key, label, definition, share_of)


REASON_LABELS = {
    "overridden_by_dispatcher": "a dispatcher overrode the route away from the program",
    "outside_hours": "the program's route was closed at the time of the call (or the CAD said so)",
    "cancelled_before_arrival": "cancelled after the team was dispatched, before it arrived",
    "closed_before_arrival": "closed after the team was dispatched, before it arrived",
    "never_dispatched": "closed without the team ever dispatched, and the CAD gave no reason",
    "cancelled_before_contact": "a diversion-line call cancelled before the line reached the caller",
    "not_reached": "a diversion-line call closed as unable to contact",
    "no_team_available": "CAD: no team was available",
    "declined_by_team": "CAD: the team declined the call",
    "caller_declined": "CAD: the caller declined the team",
    "unable_to_locate": "CAD: the person could not be located",
    "other": "CAD: another reason",
}
GROUP_LABELS = {
    DispositionGroup.RESOLVED_BY_PHONE: "resolved by phone (resolved_by_phone; safety_plan, linked_to_services or "
                                        "diverted_* with no unit on scene)",
    DispositionGroup.STABILIZED_ON_SCENE: "stabilized on scene (stabilized_on_scene; safety_plan, linked_to_services "
                                          "or diverted_* with a unit on scene)",
    DispositionGroup.COMMUNITY_LOCATION_OR_CRISIS_CENTER: "taken to a community location or crisis center",
    DispositionGroup.EMERGENCY_DEPARTMENT_VOLUNTARY: "taken to an emergency department, voluntarily",
    DispositionGroup.EMERGENCY_DEPARTMENT_INVOLUNTARY: "taken to an emergency department on an involuntary hold",
    DispositionGroup.TRANSPORTED_DESTINATION_NOT_RECORDED: "transported, destination not recorded (transported)",
    DispositionGroup.RELEASED_TO_LAW_ENFORCEMENT: "released to law enforcement",
    DispositionGroup.ARRESTED: "arrested",
    DispositionGroup.DECLINED: "declined resources (resources_declined)",
    DispositionGroup.UNABLE_TO_CONTACT: "unable to contact the person",
    DispositionGroup.CANCELLED: "cancelled",
}

SECTIONS: tuple[tuple[str, str, str, tuple[Row, ...]], ...] = (
    ("calls", "Calls and routes", "Every call the 911 center flagged for the pipeline, by the route it got.", (
        _c("calls", "Calls", "call.received events stored (each call once)"),
        _c("behavioral_health", "Behavioral-health calls", "calls with a behavioral-health concern (the rules did "
           "not give no_behavioral_health_concern)", "calls"),
        _c("route:diversion_line", "Transferred to the diversion line", "first program route: the diversion line",
           "calls"),
        _c("route:co_responder", "Co-responder team, first response", "first program route: the co-responder team",
           "calls"),
        _c("route:second_response", "Emergency with co-responder second response",
           "first program route: police/EMS first, the team requested as second response", "calls"),
        _c("route:not_eligible", "Not eligible", "never routed to the program (emergency without the team, or no "
           "behavioral-health concern), and no program route was closed for it", "calls"),
        _c("eligible", "Eligible calls", "calls routed to the program at least once (by the rules or a dispatcher), "
           "or that the rules would have routed there had the route been open", "calls"),
    )),
    ("funnel", "Eligibility funnel", "What happened to eligible calls. Served: the co-responder team arrived, or a "
     "diversion-line call closed with a disposition other than cancelled or unable_to_contact. Every eligible call "
     "not served carries a reason.", (
        _c("eligible", "Eligible calls", "as above"),
        _c("status:served", "Served", "the team arrived, or the line handled the call", "eligible"),
        _c("status:unserved", "Not served", "closed (or overridden, or outside hours) without being served",
           "eligible"),
        _c("status:open", "Still open", "neither served nor closed yet", "eligible"),
        *(_c(f"unserved:{reason}", f"Not served: {reason}", REASON_LABELS[reason], "status:unserved")
          for reason in UNSERVED_REASONS),
        _c("team_requested", "Team requested", "eligible calls whose route requested the co-responder team"),
        _c("team_dispatched", "Team dispatched", "a co-responder unit.dispatched (or an arrival without one)",
           "team_requested"),
        _c("team_arrived", "Team arrived", "a co-responder unit.arrived", "team_requested"),
    )),
    ("diversion", "Diversion line", "Houston publishes both: calls transferred to the line, and calls the line "
     "resolved with no field unit at all.", (
        _c("transferred", "Transferred to the line", "eligible calls whose first program route is the diversion line"),
        _c("resolved_without_field_unit", "Resolved by phone, no field unit", "transferred calls served by the line "
           "and closed with no unit of any kind dispatched", "transferred"),
    )),
    ("sla", "Arrival SLA compliance", "Share of co-responder requests met within the policy's breach deadline "
     "(sla.met) among those judged (met or breached); requests closed before their deadline are not judged.", (
        *(row for response in RESPONSES for row in (
            _c(f"sla_requests:{response}", f"Requests, {response} response", f"calls whose first team request was a "
               f"{response} response"),
            _c(f"sla_met:{response}", f"Met, {response} response", "the first co-responder arrival came by the breach "
               "deadline", f"sum:sla_met:{response}+sla_breached:{response}"),
            _c(f"sla_breached:{response}", f"Breached, {response} response", "the breach deadline passed first "
               "(arrived late or never)", f"sum:sla_met:{response}+sla_breached:{response}"),
        )),
    )),
    ("outcomes", "Outcomes", "Eligible calls that closed, by disposition group (NEMSIS eDisposition.30 codes in the "
     "README), and the derived flags.", (
        _c("closed", "Closed eligible calls", "eligible calls with a call.closed"),
        *(_c(f"disposition:{group.value}", group.value.replace("_", " ").capitalize(), GROUP_LABELS[group], "closed")
          for group in DispositionGroup),
        _c("served_closed", "Served and closed", "closed eligible calls the program served"),
        _c("diverted_from_jail", "Diverted from jail", "served and closed calls not ending in arrest or release to "
           "law enforcement", "served_closed"),
        _c("diverted_from_hospital", "Diverted from hospital", "served and closed calls not ending in an emergency "
           "department (voluntary, involuntary, or a transport whose destination was not recorded)", "served_closed"),
        _c("police_backup", "Police backup requested", "a police unit dispatched to a call on the diversion line or "
           "co-responder route (not overridden to emergency)", "eligible"),
    )),
    ("followup", "Follow-up", "After a contact ends, clinicians follow up (the followup timers). Completed: "
     "followup.completed with a linkage other than declined; windows count days from the end of the contact.", (
        _c("followup_contacts", "Contacts followed up", "contacts whose follow-up schedule started"),
        *(_c(f"followup_completed_{window}", f"Completed within {window}", f"completed at most {days:g} days after "
             "the contact ended", "followup_contacts") for window, days in FOLLOWUP_WINDOWS),
        *(_c(f"followup_status:{status}", f"Follow-up {status.replace('_', ' ')}", {
            "open": "still open", "completed": "completed with a linkage", "declined": "the person declined",
            "dropped_out": "the last scheduled attempt did not reach the person",
            "expired": "the window closed with the follow-up open"}[status], "followup_contacts")
          for status in FOLLOWUP_STATUSES),
        _c("followup_attempts", "Attempts made", "followup.attempted events recorded"),
        _c("followup_reached", "Contacts reached", "follow-ups where an attempt reached the person (or they "
           "declined, or it completed)", "followup_contacts"),
        *(_c(f"linkage:{linkage}", f"Linked: {linkage.replace('_', ' ')}", "completed follow-ups with this linkage",
             "followup_status:completed") for linkage in COMPLETED_LINKAGES),
    )),
    ("repeat", "Repeat contacts", "People (by pseudonymous person_ref, the caller's keyed phone hash) with a "
     "behavioral-health call in the period; repeat: another such call of theirs at most 30 / 90 days before.", (
        _c("people", "People with a crisis contact", "distinct callers (person_ref) with a behavioral-health call"),
        _c("repeat_30d", "Two or more contacts in 30 days", "a call preceded by another within 30 days", "people"),
        _c("repeat_90d", "Two or more contacts in 90 days", "a call preceded by another within 90 days", "people"),
    )),
)

# Counts a total splits into (total, displayed parts, hidden remainder or None). The remainder is never
# displayed but follows from the others, so suppression protects it like any cell.
_FAMILIES: tuple[tuple[str, tuple[str, ...], str | None], ...] = (
    ("calls", tuple(f"route:{route.value}" for route in ProgramRoute), None),
    ("calls", ("behavioral_health",), "~not_behavioral_health"),
    ("eligible", tuple(f"route:{route.value}" for route in PROGRAM_ROUTES), None),
    ("eligible", tuple(f"status:{status.value}" for status in Status), None),
    ("status:unserved", tuple(f"unserved:{reason}" for reason in UNSERVED_REASONS), None),
    ("eligible", ("police_backup",), "~no_police_backup"),
    ("transferred", ("resolved_without_field_unit",), "~transferred_other"),
    ("team_requested", ("team_dispatched",), "~team_not_dispatched"),
    ("team_dispatched", ("team_arrived",), "~team_not_arrived"),
    ("team_requested", tuple(f"sla_requests:{response}" for response in RESPONSES), None),
    ("sla_requests:second", ("route:second_response",), "~second_other"),
    ("sla_requests:first", ("route:co_responder",), "~first_from_other_routes"),
    *((f"sla_requests:{r}", (f"sla_met:{r}", f"sla_breached:{r}"), f"~not_judged:{r}") for r in RESPONSES),
    ("closed", tuple(f"disposition:{group.value}" for group in DispositionGroup), None),
    ("closed", ("served_closed",), "~closed_not_served"),
    ("served_closed", ("diverted_from_jail",), "~custody"),
    ("served_closed", ("diverted_from_hospital",), "~hospital"),
    ("followup_contacts", tuple(f"followup_status:{status}" for status in FOLLOWUP_STATUSES), None),
    ("followup_status:completed", tuple(f"linkage:{linkage}" for linkage in COMPLETED_LINKAGES), None),
    ("followup_status:completed", ("followup_completed_30d",), "~completed_after_30d"),
    ("followup_completed_30d", ("followup_completed_7d",), "~completed_7d_30d"),
    ("followup_completed_7d", ("followup_completed_48h",), "~completed_48h_7d"),
    ("followup_contacts", ("followup_reached",), "~not_reached"),
    ("people", ("repeat_90d",), "~not_repeat_90d"),
    ("repeat_90d", ("repeat_30d",), "~repeat_30d_90d"),
)
HOUR_MEASURES = ("calls", "eligible", "status:served", "status:unserved", "status:open")
DAY_MEASURES = ("calls", *(f"route:{route.value}" for route in ProgramRoute))
# Counts of people are not additive over groups (one person calls from two districts): no group lines.
PEOPLE_MEASURES = frozenset({"people", "repeat_30d", "repeat_90d", "~not_repeat_90d", "~repeat_30d_90d"})


def period_of(by: str) -> str:
    """The periods of "routes over time": the breakdown's own when it is one, weeks otherwise."""
    return by if by in ("day", "week", "month") else "week"


def cell(table: str, measure: str) -> str:
    return f"{table}|{measure}"


def _tables_with_hidden(tables: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    """Each table's counts (missing ones are zero) plus the hidden remainders of its families."""
    out: dict[str, dict[str, int]] = {}
    for table, counts in tables.items():
        values = dict(counts)
        for total, parts, hidden in _FAMILIES:
            if hidden is not None and total in values and all(part in values for part in parts):
                values[hidden] = values[total] - sum(values[part] for part in parts)
        out[table] = values
    return out


def _lines(tables: Mapping[str, Mapping[str, int]], dimensions: Mapping[str, Sequence[str]]) -> list[Line]:
    lines: list[Line] = []
    for table, values in tables.items():
        for total, parts, hidden in _FAMILIES:
            members = tuple(parts) + ((hidden,) if hidden is not None else ())
            if total in values and all(member in values for member in members):
                lines.append(Line(cell(table, total), tuple(cell(table, member) for member in members)))
    for groups in dimensions.values():
        if not groups:
            continue
        measures = set.intersection(*(set(tables[group]) for group in groups)) & set(tables["all"])
        for measure in sorted(measures - PEOPLE_MEASURES):
            lines.append(Line(cell("all", measure), tuple(cell(group, measure) for group in groups)))
    return lines


def suppress_counts(counts: Mapping[str, int], threshold: int = DEFAULT_THRESHOLD) -> tuple[dict[str, int | None],
                                                                                          list[str]]:
    """One table of counts (a center's day on the feed), suppressed: (counts with ``None`` where suppressed,
    the suppressed measures)."""
    values = _tables_with_hidden({"all": counts})["all"]
    lines = _lines({"all": values}, {})
    hidden = frozenset(cell("all", m) for m in values if m.startswith("~"))
    suppressed = suppress({cell("all", m): n for m, n in values.items()}, lines, hidden, threshold)
    shown = {m: (None if cell("all", m) in suppressed else n) for m, n in counts.items()}
    return shown, sorted(m for m in counts if cell("all", m) in suppressed)


def complete(counts: Mapping[str, int], measures: Sequence[str]) -> dict[str, int]:
    """``counts`` with every measure of ``measures`` present (zero when absent)."""
    return {measure: int(counts.get(measure, 0)) for measure in measures}


def build_report(
    start: date, end: date, by: str, timezone: str, columns: Sequence[str],
    counts: Mapping[str, Mapping[str, int]], stats: Mapping[str, Mapping[str, Stat]],
    threshold: int = DEFAULT_THRESHOLD,
) -> Report:
    """Suppress and assemble the report.

    ``counts`` maps table ids (``all``, the ``columns``, ``route:*``, ``hour:*``, ``day:*``) to their
    counts; people counts (``people``, ``repeat_30d``, ``repeat_90d``) sit in ``all`` and the columns.
    ``stats`` maps ``all`` and the columns to ``<interval>:<response>`` statistics.
    """
    tables = _tables_with_hidden(counts)
    dimensions = {
        "columns": [c for c in columns if c != "all"],
        "route": sorted(t for t in tables if t.startswith("route:")),
        "hour": sorted(t for t in tables if t.startswith("hour:")),
        "period": sorted(t for t in tables if t.startswith(f"{period_of(by)}:") and t not in columns),
    }
    lines = _lines(tables, dimensions)
    if "arrival" in tables:  # the arrival-time histogram: its bins add up to the team's arrivals
        bins = sorted(m for m in tables["arrival"] if m.startswith("bin:"))
        tables["arrival"]["~outside_histogram"] = (tables["all"].get("team_arrived", 0)
                                                   - sum(tables["arrival"][b] for b in bins))
        lines.append(Line(cell("all", "team_arrived"),
                          tuple(cell("arrival", m) for m in (*bins, "~outside_histogram"))))
    values = {cell(table, measure): n for table, measures in tables.items() for measure, n in measures.items()}
    hidden = frozenset(c for c in values if c.split("|", 1)[1].startswith("~"))
    # The whole range's figures are what a reader looks at first: hide other cells to protect them.
    suppressed = suppress(values, lines, hidden, threshold, frozenset(c for c in values if c.startswith("all|")))

    def count_figure(table: str, measure: str) -> Figure:
        key = cell(table, measure)
        if key not in values:
            return Figure(None, no_data=True)
        if key in suppressed:
            return Figure(None, suppressed=True)
        return Figure(values[key])

    def share_figure(table: str, measure: str, of: str) -> Figure:
        numerator = count_figure(table, measure)
        parts = of.removeprefix("sum:").split("+") if of.startswith("sum:") else [of]
        denominators = [count_figure(table, part) for part in parts]
        if numerator.suppressed or any(d.suppressed for d in denominators):
            return Figure(None, suppressed=True)
        if numerator.value is None or any(d.value is None for d in denominators):
            return Figure(None, no_data=True)
        total = sum(int(d.value or 0) for d in denominators)
        if total == 0:
            return Figure(None, no_data=True)
        return Figure(round(100 * int(numerator.value) / total, 1))

    sections = []
    for key, title, definition, rows in SECTIONS:
        section = Section(key, title, definition, list(rows))
        for row in rows:
            section.figures[row.key] = {column: count_figure(column, row.key) for column in columns}
            if row.share_of is not None:
                section.figures[f"{row.key}%"] = {column: share_figure(column, row.key, row.share_of)
                                                  for column in columns}
        sections.append(section)
    sections.insert(4, _times_section(columns, stats, threshold))

    return Report(
        start=start, end=end, by=by, timezone=timezone, threshold=threshold, columns=list(columns),
        sections=sections,
        hours={t: {m: count_figure(t, m) for m in HOUR_MEASURES} for t in dimensions["hour"]},
        days={t: {m: count_figure(t, m) for m in DAY_MEASURES}
              for t in sorted(t for t in tables if t.startswith(f"{period_of(by)}:"))},
        routes={t: {row.key: count_figure(t, row.key) for _, _, _, rows in SECTIONS[1:3] for row in rows}
                for t in dimensions["route"]},
        arrival={m: count_figure("arrival", m) for m in sorted(tables.get("arrival", {})) if m.startswith("bin:")},
        suppressed=sorted(c for c in suppressed if not c.split("|", 1)[1].startswith("~")),
        cells=len(values) - len(hidden),
    )


def _times_section(columns: Sequence[str], stats: Mapping[str, Mapping[str, Stat]], threshold: int) -> Section:
    rows = []
    for interval, (label, definition) in INTERVALS.items():
        for response in RESPONSES:
            for statistic, name in (("median", "median"), ("p90", "90th percentile")):
                rows.append(Row(f"{interval}:{response}:{statistic}", f"{label}, {response} response, {name} (s)",
                                f"{definition}; {name} by nearest rank, in seconds"))
    section = Section("times", "Response times", "Co-responder team intervals, exact from the stored facts at "
                      f"report time: the median and the 90th percentile (EMS practice judges the 90th). Not shown for "
                      f"fewer than {threshold + 1} calls.", rows)
    for row in rows:
        interval, response, statistic = row.key.split(":")
        section.figures[row.key] = {}
        for column in columns:
            stat = stats.get(column, {}).get(f"{interval}:{response}")
            if stat is None or stat.n == 0:
                figure = Figure(None, no_data=True)
            elif sensitive(stat.n, threshold):
                figure = Figure(None, suppressed=True)
            else:
                figure = Figure(stat.median if statistic == "median" else stat.p90)
            section.figures[row.key][column] = figure
    return section


def nearest_rank(values: Sequence[float], p: float) -> float | None:
    """The ``p`` quantile by nearest rank: the smallest value with at least ``p`` of all values at or below it
    (what PostgreSQL's ``percentile_disc`` returns)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = math.ceil(p * len(ordered))  # in floating point, exactly as percentile_disc computes it
    return ordered[min(max(rank, 1), len(ordered)) - 1]
