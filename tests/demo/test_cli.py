"""`mnp demo` refuses a state dir it cannot use, before it starts anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnp.cli import main


def test_a_non_empty_dir_is_refused_with_what_to_do_next(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "something").write_text("x")
    assert main(["demo", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "is not empty" in err and f"mnp local down --dir {tmp_path}" in err
    assert [p.name for p in tmp_path.iterdir()] == ["something"]


def test_a_dir_too_long_for_containerd_sockets_is_refused_and_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    long_dir = tmp_path / ("d" * 90)
    assert main(["demo", "--dir", str(long_dir)]) == 1
    assert "too long" in capsys.readouterr().err
    assert not long_dir.exists()
