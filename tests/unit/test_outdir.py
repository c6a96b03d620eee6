"""The report directory appears whole on commit, and never in part."""

from pathlib import Path

import pytest

from hyperlane.errors import UsageError
from hyperlane.report.outdir import StagedDirectory


def test_commit_creates_target(tmp_path: Path) -> None:
    target = tmp_path / "report"
    with StagedDirectory(target) as staged:
        (staged.path / "report.json").write_text("{}")
        staged.commit()
    assert (target / "report.json").read_text() == "{}"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["report"]


def test_failure_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "report"
    with pytest.raises(RuntimeError), StagedDirectory(target) as staged:
        (staged.path / "report.json").write_text("{}")
        raise RuntimeError("stage failed")
    assert list(tmp_path.iterdir()) == []


def test_replaces_earlier_report(tmp_path: Path) -> None:
    target = tmp_path / "report"
    target.mkdir()
    (target / "report.json").write_text("old")
    (target / "stale.txt").write_text("old")
    with StagedDirectory(target) as staged:
        (staged.path / "report.json").write_text("new")
        staged.commit()
    assert (target / "report.json").read_text() == "new"
    assert not (target / "stale.txt").exists()


def test_failure_keeps_earlier_report(tmp_path: Path) -> None:
    target = tmp_path / "report"
    target.mkdir()
    (target / "report.json").write_text("old")
    with pytest.raises(RuntimeError), StagedDirectory(target):
        raise RuntimeError("stage failed")
    assert (target / "report.json").read_text() == "old"


def test_rejects_foreign_directory(tmp_path: Path) -> None:
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep")
    with pytest.raises(UsageError, match="not empty"):
        StagedDirectory(target)


def test_rejects_missing_parent(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="parent"):
        StagedDirectory(tmp_path / "absent" / "report")
