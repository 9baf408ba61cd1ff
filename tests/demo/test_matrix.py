"""The demo's connectivity table: cells from both IP families, the rendered table, differences."""

from __future__ import annotations

from mnp.demo.matrix import BLOCKED, OPEN, cell, cells, differences, expected_cells, render

NAMES = ["a", "b", "c"]
LABELS = {"a": "a:80", "b": "b:8080", "c": "c:5432"}


def all_open() -> dict[tuple[str, str], str]:
    return {(s, d): OPEN for s in NAMES for d in NAMES if s != d}


def test_a_cell_is_open_or_blocked_only_when_both_families_agree() -> None:
    assert cell(True, True) == OPEN
    assert cell(False, False) == BLOCKED
    assert cell(True, False) == "v4 only"
    assert cell(False, True) == "v6 only"


def test_cells_combine_the_families_of_each_pair_and_a_missing_family_counts_as_blocked() -> None:
    reached = {("a", "b", 4): True, ("a", "b", 6): True, ("b", "a", 4): True, ("b", "a", 6): False}
    reached |= {("a", "c", 4): False}
    assert cells(reached) == {("a", "b"): OPEN, ("b", "a"): "v4 only", ("a", "c"): BLOCKED}


def test_the_table_has_a_row_per_source_and_a_column_per_target_with_self_marked() -> None:
    got = all_open() | {("a", "c"): BLOCKED}
    lines = render(NAMES, LABELS, got).splitlines()
    assert lines[0].split() == ["from", "\\", "to", "a:80", "b:8080", "c:5432"]
    assert lines[1].split() == ["a", "·", "✔", "✘"]
    assert lines[2].split() == ["b", "✔", "·", "✔"]
    assert lines[3].split() == ["c", "✔", "✔", "·"]
    assert "changed" not in lines[-1]


def test_columns_line_up_under_their_labels() -> None:
    lines = render(NAMES, LABELS, all_open()).splitlines()
    column = lines[0].index("c:5432")
    assert all(line[column] in "✔✘·" for line in lines[1:4])


def test_cells_that_differ_from_the_earlier_matrix_are_marked_and_counted() -> None:
    after = all_open() | {("a", "c"): BLOCKED, ("c", "a"): BLOCKED}
    text = render(NAMES, LABELS, after, before=all_open())
    lines = text.splitlines()
    assert lines[1].split() == ["a", "·", "✔", "✘*"]
    assert lines[3].split() == ["c", "✘*", "✔", "·"]
    assert lines[-1].endswith("* changed (2)")


def test_a_pair_the_probe_did_not_report_shows_as_unknown() -> None:
    got = all_open()
    del got["b", "c"]
    assert render(NAMES, LABELS, got).splitlines()[2].split() == ["b", "✔", "·", "?"]


def test_differences_name_every_pair_not_as_expected_and_nothing_when_all_match() -> None:
    want = expected_cells({("a", "b"): True, ("b", "a"): False, ("a", "c"): True})
    assert want == {("a", "b"): OPEN, ("b", "a"): BLOCKED, ("a", "c"): OPEN}
    assert differences(dict(want), want) == []
    got = {("a", "b"): OPEN, ("b", "a"): "v6 only"}
    assert differences(got, want) == [
        "b -> a: got v6 only, expected ✘",
        "a -> c: got nothing, expected ✔",
    ]
