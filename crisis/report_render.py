"""The outcomes report in four formats: Markdown, CSV, JSON and one self-contained HTML file.

Every format shows the same figures. Markdown and HTML mark a suppressed figure ``*``; CSV and JSON
say which cells were suppressed (``suppressed`` true, value empty / null) and list them. No format
holds a phone number, free text or ``person_ref``: a report is built from counts and intervals only.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from html import escape
from typing import Any

from crisis import report_charts as charts
from domain.outcome_definitions import DispositionGroup
from domain.outcome_report import ARRIVAL_BINS, HOUR_MEASURES, Figure, Report, Row, Section

SUPPRESSED_MARK = "*"
SUPPRESSION_NOTE = ("Counts from 1 to {k} are suppressed (CMS cell-size rule), and so is any other figure from "
                    "which one could be computed (secondary suppression): shown as *. Shares of a suppressed count "
                    "and statistics over fewer than {k1} calls are suppressed too.")
ROUTE_LABELS = {
    "route:diversion_line": "Diversion line", "route:co_responder": "Co-responder (first)",
    "route:second_response": "Second response", "route:not_eligible": "Not eligible",
}


def column_label(column: str) -> str:
    if column == "all":
        return "All"
    kind, _, value = column.partition(":")
    return {"week": f"Week of {value}", "month": value[:7]}.get(kind, value)


def bin_label(name: str) -> str:
    """``bin:005-010`` -> ``5-10``, ``bin:060+`` -> ``60+`` (minutes)."""
    low, _, high = name.removeprefix("bin:").rstrip("+").partition("-")
    return f"{int(low)}-{int(high)}" if high else f"{int(low)}+"


def kind_of(section: Section, key: str) -> str:
    if section.key == "times":
        return "seconds"
    return "percent" if key.endswith("%") else "count"


def _rows(section: Section) -> Iterator[tuple[str, str, str]]:
    """(figure key, label, definition) in display order: each count, then its share when it has one."""
    for row in section.rows:
        yield row.key, row.label, row.definition
        if f"{row.key}%" in section.figures:
            yield f"{row.key}%", f"{row.label} (% of {_share_label(section, row)})", f"share of {row.share_of}"


def _share_label(section: Section, row: Row) -> str:
    of = row.share_of or ""
    if of.startswith("sum:"):
        return "met + breached"
    labels = {r.key: r.label for r in section.rows}
    return labels.get(of, of.replace("_", " ")).lower()


def text(figure: Figure, kind: str) -> str:
    if figure.suppressed:
        return SUPPRESSED_MARK
    if figure.value is None:
        return "-"
    if kind == "percent":
        return f"{figure.value:.1f}%"
    if kind == "seconds":
        seconds = round(float(figure.value))
        return f"{seconds // 60}:{seconds % 60:02d}"
    return f"{int(figure.value):,}"


def _header(report: Report) -> list[str]:
    return [
        f"Outcomes report, {report.start.isoformat()} to {report.end.isoformat()} (local days, {report.timezone})",
        f"Breakdown by {report.by}; generated {report.meta.get('generated_at', '')} by "
        f"{report.meta.get('operator', '')} (report run {report.meta.get('run_id', '-')}).",
        SUPPRESSION_NOTE.format(k=report.threshold, k1=report.threshold + 1),
        "Times are minutes:seconds. Definitions of every figure: README, \"Reports and outcomes\".",
    ]


def _extra_tables(report: Report) -> list[tuple[str, str, list[str], list[tuple[str, list[str]]]]]:
    """(title, definition, column labels, rows of text) for the route, hour, day and arrival tables."""
    tables = []
    route_columns = list(report.routes)
    if route_columns:
        keys = list(next(iter(report.routes.values())))
        tables.append(("Funnel by route", "The eligibility funnel and the diversion line, by first program route.",
                       [ROUTE_LABELS.get(c, c) for c in route_columns],
                       [(key, [text(report.routes[c][key], "count") for c in route_columns]) for key in keys]))
    if report.hours:
        hours = list(report.hours)
        tables.append(("By hour of day", "Calls by the local hour they came in (the policy's time zone).",
                       [h.removeprefix("hour:") for h in hours],
                       [(m, [text(report.hours[h][m], "count") for h in hours]) for m in HOUR_MEASURES]))
    if report.days:
        days = list(report.days)
        measures = list(next(iter(report.days.values())))
        tables.append(("Routes over time", "Calls by period and first program route.",
                       [column_label(d) for d in days],
                       [(m, [text(report.days[d][m], "count") for d in days]) for m in measures]))
    if report.arrival:
        tables.append(("Arrival times", "Team arrivals by minutes from request to arrival.",
                       ["calls"], [(bin_label(b), [text(f, "count")]) for b, f in report.arrival.items()]))
    return tables


def render_markdown(report: Report) -> str:
    lines = [f"# {_header(report)[0]}", "", *(_header(report)[1:]), ""]
    labels = [column_label(c) for c in report.columns]
    for section in report.sections:
        lines += [f"## {section.title}", "", section.definition, "",
                  "| Figure | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
        for key, label, _ in _rows(section):
            cells = [text(section.figures[key][c], kind_of(section, key)) for c in report.columns]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    for title, definition, columns, rows in _extra_tables(report):
        lines += [f"## {title}", "", definition, "", "| | " + " | ".join(columns) + " |",
                  "|---|" + "---:|" * len(columns)]
        lines += [f"| {key} | " + " | ".join(values) + " |" for key, values in rows]
        lines.append("")
    return "\n".join(lines)


def _records(report: Report) -> Iterator[dict[str, Any]]:
    for section in report.sections:
        for key, label, _ in _rows(section):
            for column in report.columns:
                figure = section.figures[key][column]
                yield {"section": section.key, "figure": key, "label": label, "column": column,
                       "kind": kind_of(section, key), "value": figure.value, "suppressed": figure.suppressed}
    for table, figures in (("by_route", report.routes), ("by_hour", report.hours), ("routes_over_time", report.days)):
        for column, measures in figures.items():
            for measure, figure in measures.items():
                yield {"section": table, "figure": measure, "label": measure, "column": column, "kind": "count",
                       "value": figure.value, "suppressed": figure.suppressed}
    for name, figure in report.arrival.items():
        yield {"section": "arrival_times", "figure": name, "label": name, "column": "all", "kind": "count",
               "value": figure.value, "suppressed": figure.suppressed}


def render_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, ["section", "figure", "label", "column", "kind", "value", "suppressed"],
                            lineterminator="\n")
    writer.writeheader()
    for record in _records(report):
        writer.writerow({**record, "value": "" if record["value"] is None else record["value"],
                         "suppressed": "true" if record["suppressed"] else "false"})
    return out.getvalue()


def _figures_json(figures: dict[str, Figure]) -> dict[str, Any]:
    return {"values": {c: f.value for c, f in figures.items()},
            "suppressed": [c for c, f in figures.items() if f.suppressed]}


def render_json(report: Report) -> str:
    document = {
        "report": "crisis-pipeline outcomes",
        "from": report.start.isoformat(), "to": report.end.isoformat(), "timezone": report.timezone,
        "by": report.by, "columns": report.columns, **report.meta,
        "suppression": {"threshold": report.threshold,
                        "rule": SUPPRESSION_NOTE.format(k=report.threshold, k1=report.threshold + 1),
                        "suppressed_cells": report.suppressed, "count_cells": report.cells},
        "sections": [
            {"key": s.key, "title": s.title, "definition": s.definition,
             "figures": [{"key": key, "label": label, "definition": definition, "kind": kind_of(s, key),
                          **_figures_json(s.figures[key])} for key, label, definition in _rows(s)]}
            for s in report.sections],
        "by_route": {c: _figures_json(m) for c, m in report.routes.items()},
        "by_hour": {c: _figures_json(m) for c, m in report.hours.items()},
        "routes_over_time": {c: _figures_json(m) for c, m in report.days.items()},
        "arrival_times": _figures_json(report.arrival),
    }
    return json.dumps(document, indent=2, default=str) + "\n"


_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;line-height:1.4}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0 1rem;display:block;overflow-x:auto}
th,td{border:1px solid #ddd;padding:.2rem .45rem;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left;white-space:normal;min-width:16em;max-width:30em}
.def{color:#777;font-size:.75rem}
.charts{display:flex;flex-wrap:wrap;gap:1.5rem}.note{color:#555;font-size:.9rem}
@media print{.charts{display:block}}
"""


def _section_figure(report: Report, section_key: str, key: str, column: str = "all") -> Figure:
    for section in report.sections:
        if section.key == section_key:
            return section.figures[key][column]
    raise KeyError(section_key)


def _charts(report: Report) -> list[str]:
    out = []
    if report.days:
        days = list(report.days)
        series = [(ROUTE_LABELS[m], [report.days[d][m] for d in days])
                  for m in next(iter(report.days.values())) if m.startswith("route:")]
        period = {"day": "day", "month": "month"}.get(report.by, "week")
        out.append(charts.line_chart(f"Routes over time (calls per {period})", f"Calls per {period} by first program "
                                     "route.", [column_label(d).removeprefix("Week of ") for d in days],
                                     series))
    funnel = [("Behavioral-health calls", ("calls", "behavioral_health")), ("Eligible", ("calls", "eligible")),
              ("Team requested", ("funnel", "team_requested")), ("Team dispatched", ("funnel", "team_dispatched")),
              ("Team arrived", ("funnel", "team_arrived")), ("Served (team or line)", ("funnel", "status:served")),
              ("Not served", ("funnel", "status:unserved"))]
    out.append(charts.horizontal_bars("Eligibility funnel", "Counts at each stage of the funnel, whole range.",
                                      [(label, _section_figure(report, s, k)) for label, (s, k) in funnel]))
    reasons = [(r.key.removeprefix("unserved:").replace("_", " "), _section_figure(report, "funnel", r.key))
               for r in next(s for s in report.sections if s.key == "funnel").rows if r.key.startswith("unserved:")]
    reasons = [(label, f) for label, f in reasons if f.suppressed or (f.value or 0) > 0]
    if reasons:
        out.append(charts.horizontal_bars("Why eligible calls were not served", "Unserved eligible calls by reason.",
                                          reasons))
    if report.arrival:
        bins = [(bin_label(name), figure) for name, figure in report.arrival.items()]
        out.append(charts.histogram("Team arrival times", "Team arrivals by minutes from request to arrival, with "
                                    "the median and 90th percentile.", bins, ARRIVAL_BINS,
                                    report.meta.get("arrival_median_seconds"), report.meta.get("arrival_p90_seconds")))
    outcomes = [(g.value.replace("_", " "), _section_figure(report, "outcomes", f"disposition:{g.value}%"))
                for g in DispositionGroup]
    out.append(charts.horizontal_bars("Outcomes (% of closed eligible calls)", "Closed eligible calls by disposition "
                                      "group.", outcomes, unit="%", maximum=100))
    followups = [(f"within {w}", _section_figure(report, "followup", f"followup_completed_{w}%"))
                 for w in ("48h", "7d", "30d")]
    out.append(charts.horizontal_bars("Follow-up completed (% of contacts)", "Contacts with a completed follow-up "
                                      "within 48 hours, 7 and 30 days.", followups, unit="%", maximum=100))
    return out


def _html_table(columns: list[str], rows: list[tuple[str, list[str]]], definitions: list[str] | None = None) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = []
    for index, (label, values) in enumerate(rows):
        cells = "".join(f"<td>{escape(v)}</td>" for v in values)
        definition = definitions[index] if definitions else ""
        note = f'<div class="def">{escape(definition)}</div>' if definition else ""
        body.append(f"<tr><td>{escape(label)}{note}</td>{cells}</tr>")
    return f"<table><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(report: Report) -> str:
    header = _header(report)
    parts = [f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{escape(header[0])}</title>"
             f"<style>{_CSS}</style></head><body><h1>{escape(header[0])}</h1>",
             *(f'<p class="note">{escape(line)}</p>' for line in header[1:]),
             '<div class="charts">', *_charts(report), "</div>"]
    labels = [column_label(c) for c in report.columns]
    for section in report.sections:
        rows = [(label, [text(section.figures[key][c], kind_of(section, key)) for c in report.columns])
                for key, label, _ in _rows(section)]
        definitions = ["" if key.endswith("%") else definition for key, _, definition in _rows(section)]
        parts += [f"<h2>{escape(section.title)}</h2><p class=\"note\">{escape(section.definition)}</p>",
                  _html_table(labels, rows, definitions)]
    for title, definition, columns, rows in _extra_tables(report):
        parts += [f"<h2>{escape(title)}</h2><p class=\"note\">{escape(definition)}</p>", _html_table(columns, rows)]
    parts.append("</body></html>\n")
    return "".join(parts)


RENDERERS: dict[str, Callable[[Report], str]] = {
    "md": render_markdown, "csv": render_csv, "json": render_json, "html": render_html,
}
