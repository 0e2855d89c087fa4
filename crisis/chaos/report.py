"""The suite's results as a table: printed by ``crisis chaos`` and written into the README's
"Reliability" section between its markers, so the table there is always the output of one command."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

BEGIN = "<!-- reliability:begin (written by `crisis chaos --readme README.md`; do not edit by hand) -->"
END = "<!-- reliability:end -->"


def _recovery(summary: Mapping[str, Any]) -> str:
    median, worst = summary.get("recovery_seconds_median"), summary.get("recovery_seconds_max")
    if median is None:
        return "n/a"
    return f"{median:g} / {worst:g}"


def markdown_table(summaries: Sequence[Mapping[str, Any]], descriptions: Mapping[str, str]) -> str:
    """One row per scenario: input, faults, what was lost (or stored wrong, or unexpected) or duplicated in
    Postgres, dead letters against the expected ones, duplicates consumers dropped, recovery, personal data."""
    header = ("| scenario | fault | events sent | faults | lost or wrong | duplicated | dead-lettered (expected) "
              "| duplicates dropped by consumers | recovery s (median / max) | personal data hits | result |\n"
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    rows = []
    for s in summaries:
        if "error" in s:
            rows.append(f"| {s['scenario']} | {descriptions.get(s['scenario'], '')} | | | | | | | | | "
                        f"**error**: {s['error']} |")
            continue
        lost = s["lost"] + s.get("unexpected", 0) + s.get("mismatched", 0)
        result = "passed" if s["passed"] else "**FAILED**"
        rows.append(
            f"| {s['scenario']} | {descriptions.get(s['scenario'], '')} | {s['events_sent']:,} | {s['faults']} "
            f"| {lost} | {s['duplicated']} | {s['dead_lettered']} ({s['dead_letters_expected']}) "
            f"| {s['duplicates_dropped_by_consumers']} | {_recovery(s)} | {s['personal_data_hits']} | {result} |")
    return "\n".join([header, *rows])


def write_readme_section(readme: Path, body: str) -> None:
    """Replace what is between the markers (or append the section with them)."""
    text = readme.read_text(encoding="utf-8")
    block = f"{BEGIN}\n{body.strip()}\n{END}"
    if BEGIN in text and END in text:
        text = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, text, flags=re.DOTALL)
    else:
        text = text.rstrip("\n") + f"\n\n## Reliability\n\n{block}\n"
    readme.write_text(text, encoding="utf-8")
