"""Small-cell suppression (CMS's rule) with secondary suppression, as plain arithmetic.

A report is a set of count cells tied by lines: a total equals the sum of its parts (funnel stages,
dispositions, the groups of a breakdown). Some cells are displayed, some are never displayed but can
be computed from the displayed ones (a complement: "transferred" minus "resolved by phone").

- **Primary**: a displayed count from 1 to ``threshold`` (10) is suppressed; zero is shown.
- **Secondary**: no cell from 1 to ``threshold``, suppressed or never displayed, may be computable
  from what is displayed. Every line is a linear equation over the cells; a cell is computable
  exactly when its unit vector lies in the row space of the equations restricted to the unknown
  cells (Gauss-Jordan over the rationals, per connected group of unknowns). While some such cell is
  computable, the smallest displayed cell of a line through it is suppressed too (parts before
  totals, non-zero before zero), and the check runs again. A secondary suppression that ends up
  computable anyway is shown again: it protects nothing, and so no suppressed figure is computable.
- Shares and statistics derived from suppressed counts are suppressed by the report (``shown``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

DEFAULT_THRESHOLD = 10


@dataclass(frozen=True)
class Line:
    """``total`` = sum of ``parts`` (cell ids)."""

    total: str
    parts: tuple[str, ...]

    @property
    def cells(self) -> tuple[str, ...]:
        return (self.total, *self.parts)


def sensitive(value: int, threshold: int) -> bool:
    """A count CMS's rule never lets anyone read: 1 to ``threshold``."""
    return 1 <= value <= threshold


def _equations(lines: Sequence[Line], values: Mapping[str, int], unknown: set[str]
               ) -> list[tuple[dict[str, Fraction], Fraction]]:
    """Each line as ``sum(coefficient * unknown) = known``, with the displayed values moved to the right."""
    equations = []
    for line in lines:
        row: dict[str, Fraction] = defaultdict(Fraction)
        rhs = Fraction(0)
        for cell, sign in ((line.total, 1), *((part, -1) for part in line.parts)):
            if cell in unknown:
                row[cell] += sign
            else:
                rhs -= sign * values[cell]
        row = {cell: c for cell, c in row.items() if c != 0}
        if row:
            equations.append((row, rhs))
    return equations


def computable(lines: Sequence[Line], values: Mapping[str, int], unknown: set[str]) -> set[str]:
    """The unknown cells whose value follows from the displayed ones (exact rational elimination)."""
    equations = _equations(lines, values, unknown)
    # Connected groups of unknowns eliminate independently: small systems, even for large reports.
    parent: dict[str, str] = {}

    def find(cell: str) -> str:
        while parent.setdefault(cell, cell) != cell:
            parent[cell] = parent[parent[cell]]
            cell = parent[cell]
        return cell

    for row, _ in equations:
        first, *rest = row
        for cell in rest:
            parent[find(cell)] = find(first)
    groups: dict[str, list[tuple[dict[str, Fraction], Fraction]]] = defaultdict(list)
    for row, rhs in equations:
        groups[find(next(iter(row)))].append((dict(row), rhs))
    found: set[str] = set()
    for system in groups.values():
        found |= _determined(system)
    return found


def _eliminate(row: dict[str, Fraction], pivot: str, pivot_row: dict[str, Fraction]) -> None:
    """Subtract ``pivot_row`` from ``row`` so that ``row`` no longer names ``pivot`` (zero cells dropped)."""
    factor = row.get(pivot)
    if factor:
        for cell, c in pivot_row.items():
            value = row.get(cell, Fraction(0)) - factor * c
            if value:
                row[cell] = value
            else:
                row.pop(cell, None)


def _determined(system: list[tuple[dict[str, Fraction], Fraction]]) -> set[str]:
    """Gauss-Jordan: a pivot variable is determined when its reduced row names no other variable."""
    rows = [dict(row) for row, _ in system]
    pivots: list[tuple[str, dict[str, Fraction]]] = []
    for row in rows:
        for pivot, pivot_row in pivots:
            _eliminate(row, pivot, pivot_row)
        if not row:
            continue
        pivot = min(row)
        scale = row[pivot]
        row = {cell: c / scale for cell, c in row.items()}
        for _, other in pivots:  # keep earlier rows reduced against the new pivot
            _eliminate(other, pivot, row)
        pivots.append((pivot, row))
    return {pivot for pivot, row in pivots if len(row) == 1}


def suppress(values: Mapping[str, int], lines: Sequence[Line], hidden: frozenset[str] = frozenset(),
             threshold: int = DEFAULT_THRESHOLD, keep: frozenset[str] = frozenset()) -> frozenset[str]:
    """The displayed cells to suppress (primary and secondary). ``hidden`` cells are never displayed;
    cells in ``keep`` (a report's totals) are chosen for secondary suppression only when nothing else will do.

    Afterwards no suppressed cell and no hidden cell from 1 to ``threshold`` is ``computable``.
    """
    displayed = [cell for cell in values if cell not in hidden]
    suppressed = {cell for cell in displayed if sensitive(values[cell], threshold)}
    lines_of: dict[str, list[Line]] = defaultdict(list)
    for line in lines:
        for cell in line.cells:
            lines_of[cell].append(line)
    relevant = [line for line in lines if any(cell in hidden or cell in suppressed for cell in line.cells)]
    while True:
        unknown = suppressed | set(hidden)
        found = computable(relevant, values, unknown)
        protected = {cell for cell in found if sensitive(values[cell], threshold)}
        if not protected:
            # A secondary suppression that turned out computable protects nothing: show it (it tells
            # nothing the displayed figures do not), so no suppressed figure is computable.
            return frozenset(suppressed - found)
        added = False
        touched: set[str] = set()  # cells sharing a line with one hidden this round: check them again first
        for cell in sorted(protected):
            if cell in touched:
                continue
            candidate = _candidate(cell, lines_of, values, unknown, keep)
            if candidate is not None and candidate not in suppressed:
                suppressed.add(candidate)
                unknown.add(candidate)
                touched.update(c for line in lines_of.get(candidate, []) for c in line.cells)
                added = True
        if not added:  # nothing left to hide in these lines: the rest of the report is zero or totals
            return frozenset(suppressed)
        relevant = [line for line in lines if any(cell in unknown for cell in line.cells)]


def _candidate(cell: str, lines_of: Mapping[str, list[Line]], values: Mapping[str, int],
               unknown: set[str], keep: frozenset[str]) -> str | None:
    """The displayed cell to hide with ``cell``: from its lines (or, failing that, their neighbours'), the
    smallest part, non-zero first, before any total."""
    seen = {cell}
    frontier = [cell]
    while frontier:
        options = []
        for current in frontier:
            for line in lines_of.get(current, []):
                for other in line.cells:
                    if other not in unknown:
                        options.append((other in keep, other == line.total, values[other] == 0, values[other],
                                        other))
        if options:
            return min(options)[4]
        # Every cell of these lines is unknown already: look one line further.
        further = []
        for current in frontier:
            for line in lines_of.get(current, []):
                for other in line.cells:
                    if other not in seen:
                        seen.add(other)
                        further.append(other)
        frontier = further
    return None
