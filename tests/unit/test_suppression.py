"""Small-cell suppression: no displayed count from 1 to 10, and no suppressed value computable from what is shown.

The audit here is independent of ``domain.suppression.computable``: a cell is computable from the
displayed figures exactly when adding its unit vector to the equations over the unknown cells does not
raise their rank (plain rational Gaussian elimination, written again for the test).
"""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.outcome_report import _lines, _tables_with_hidden, build_report, cell, suppress_counts
from domain.outcomes import MEASURES
from domain.suppression import Line, suppress

K = 10


def recoverable(lines: list[Line], unknown: set[str]) -> set[str]:
    """Unknown cells whose value the displayed ones determine: those on which every solution of the
    homogeneous system agrees, i.e. zero in every vector of its null space (dense elimination, once)."""
    order = sorted(unknown)
    index = {c: i for i, c in enumerate(order)}
    rows = []
    for line in lines:
        row = [Fraction(0)] * len(order)
        for c, sign in ((line.total, 1), *((p, -1) for p in line.parts)):
            if c in index:
                row[index[c]] += sign
        if any(row):
            rows.append(row)
    pivots: list[int] = []
    r = 0
    for col in range(len(order)):
        pivot = next((i for i in range(r, len(rows)) if rows[i][col] != 0), None)
        if pivot is None:
            continue
        rows[r], rows[pivot] = rows[pivot], rows[r]
        rows[r] = [x / rows[r][col] for x in rows[r]]
        for i in range(len(rows)):
            if i != r and rows[i][col] != 0:
                factor = rows[i][col]
                rows[i] = [a - factor * b for a, b in zip(rows[i], rows[r], strict=True)]
        pivots.append(col)
        r += 1
    free = [col for col in range(len(order)) if col not in pivots]
    null_space = []
    for f in free:
        vector = [Fraction(0)] * len(order)
        vector[f] = Fraction(1)
        for row_index, col in enumerate(pivots):
            vector[col] = -rows[row_index][f]
        null_space.append(vector)
    return {c for c in order if all(v[index[c]] == 0 for v in null_space)}


small_counts = st.one_of(st.integers(0, 12), st.integers(0, 60))


@st.composite
def tables(draw: st.DrawFn) -> tuple[dict[str, int], list[Line], frozenset[str]]:
    groups = draw(st.integers(1, 4))
    parts = draw(st.integers(2, 4))
    values: dict[str, int] = {}
    lines = []
    for g in range(groups):
        for p in range(parts):
            values[f"g{g}|p{p}"] = draw(small_counts)
        values[f"g{g}|total"] = sum(values[f"g{g}|p{p}"] for p in range(parts))
        lines.append(Line(f"g{g}|total", tuple(f"g{g}|p{p}" for p in range(parts))))
    for column in [*(f"p{p}" for p in range(parts)), "total"]:
        values[f"all|{column}"] = sum(values[f"g{g}|{column}"] for g in range(groups))
        lines.append(Line(f"all|{column}", tuple(f"g{g}|{column}" for g in range(groups))))
    lines.append(Line("all|total", tuple(f"all|p{p}" for p in range(parts))))
    # Some parts are never displayed (a complement), and must be protected all the same.
    hidden_part = draw(st.one_of(st.none(), st.integers(0, parts - 1)))
    hidden = frozenset(c for c in values if hidden_part is not None and c.endswith(f"|p{hidden_part}"))
    return values, lines, hidden


@settings(max_examples=200, deadline=None)
@given(tables())
def test_no_displayed_small_count_and_no_suppressed_value_can_be_recomputed(table):
    values, lines, hidden = table
    suppressed = suppress(values, lines, hidden, K)
    shown = {c: v for c, v in values.items() if c not in suppressed and c not in hidden}
    assert not [c for c, v in shown.items() if 1 <= v <= K], "a count from 1 to 10 is displayed"
    unknown = set(suppressed) | set(hidden)
    leaked = recoverable(lines, unknown) & (set(suppressed) | {c for c in hidden if 1 <= values[c] <= K})
    assert not leaked, f"computable from the displayed figures: {sorted(leaked)}"


@settings(max_examples=100, deadline=None)
@given(tables())
def test_suppression_is_deterministic_and_keeps_large_cells_when_it_can(table):
    values, lines, hidden = table
    assert suppress(values, lines, hidden, K) == suppress(dict(reversed(values.items())), lines, hidden, K)
    if all(v == 0 or v > K for v in values.values()):
        assert suppress(values, lines, hidden, K) == frozenset()


def test_the_textbook_case_a_lone_small_cell_takes_a_second_one_with_it():
    values = {"t": 57, "a": 40, "b": 13, "c": 4}
    suppressed = suppress(values, [Line("t", ("a", "b", "c"))], threshold=K)
    assert suppressed == {"c", "b"}  # c alone would be 57 - 40 - 13


def test_a_small_complement_is_protected_even_though_it_is_never_displayed():
    values = {"transferred": 50, "resolved": 45, "other": 5}
    suppressed = suppress(values, [Line("transferred", ("resolved", "other"))], frozenset({"other"}), K)
    assert "resolved" in suppressed


report_counts = st.dictionaries(st.sampled_from(MEASURES), st.integers(0, 40), max_size=40)


@settings(max_examples=15, deadline=None)
@given(st.lists(report_counts, min_size=2, max_size=3))
def test_a_whole_report_shows_no_small_count_and_leaks_none(groups):
    from collections import Counter
    from datetime import date

    columns = ["all", *(f"district:d{i}" for i in range(len(groups)))]
    counts: dict[str, dict[str, int]] = {}
    total: Counter[str] = Counter()
    for column, group in zip(columns[1:], groups, strict=True):
        counts[column] = {m: group.get(m, 0) for m in MEASURES}
        total.update(counts[column])
    counts["all"] = {m: total[m] for m in MEASURES}
    report = build_report(date(2026, 11, 1), date(2026, 11, 30), "district", "America/Chicago", columns, counts,
                          {}, K)
    for section in report.sections:
        for key, figures in section.figures.items():
            for figure in figures.values():
                if not key.endswith("%") and section.key != "times" and figure.value is not None:
                    assert not 1 <= figure.value <= K, (section.key, key)
    tables_ = _tables_with_hidden(counts)
    lines = _lines(tables_, {"columns": columns[1:]})
    values = {cell(t, m): n for t, ms in tables_.items() for m, n in ms.items()}
    suppressed = {c for c in values if c in report.suppressed}
    hidden = {c for c in values if "|~" in c}
    leaked = recoverable(lines, suppressed | hidden) & (suppressed | {c for c in hidden if 1 <= values[c] <= K})
    assert not leaked


def test_the_feed_suppresses_its_one_table_the_same_way():
    counts = {m: 0 for m in MEASURES} | {"calls": 40, "behavioral_health": 37, "route:not_eligible": 40}
    shown, suppressed = suppress_counts(counts, K)
    # 40 - 37 = 3 calls without a behavioral-health concern: the complement is protected by hiding 37.
    assert shown["behavioral_health"] is None and shown["calls"] == 40
    assert suppressed == ["behavioral_health"]
