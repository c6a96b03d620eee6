"""The report directory appears whole on commit, and never in part."""

import subprocess
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


EARLIER_REPORT = '{"schema_version": "0.1.0", "tool": {"name": "hyperlane"}}'


def _earlier_report(target: Path) -> None:
    target.mkdir()
    (target / "report.json").write_text(EARLIER_REPORT)
    (target / "deploy").mkdir()
    (target / "deploy" / "compose.yaml").write_text("old")


def test_replaces_earlier_report(tmp_path: Path) -> None:
    target = tmp_path / "report"
    _earlier_report(target)
    with StagedDirectory(target) as staged:
        (staged.path / "report.json").write_text("new")
        staged.commit()
    assert (target / "report.json").read_text() == "new"
    assert not (target / "deploy").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["report"]


def test_keeps_directory_with_other_files(tmp_path: Path) -> None:
    target = tmp_path / "project"
    _earlier_report(target)
    (target / "notes.txt").write_text("precious")
    with pytest.raises(UsageError, match=r"'notes\.txt'"):
        StagedDirectory(target)
    assert (target / "notes.txt").read_text() == "precious"


def test_keeps_foreign_report_json(tmp_path: Path) -> None:
    target = tmp_path / "project"
    target.mkdir()
    (target / "report.json").write_text('{"sales": 3}')
    with pytest.raises(UsageError, match="not written by Hyperlane"):
        StagedDirectory(target)
    assert (target / "report.json").read_text() == '{"sales": 3}'


def test_rejects_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="current directory"):
        StagedDirectory(Path())


def test_unwritable_parent(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="writable --out"):
        StagedDirectory(Path("/proc/hyperlane-report"))


def test_failure_keeps_earlier_report(tmp_path: Path) -> None:
    target = tmp_path / "report"
    _earlier_report(target)
    with pytest.raises(RuntimeError), StagedDirectory(target):
        raise RuntimeError("stage failed")
    assert (target / "report.json").read_text() == EARLIER_REPORT
    assert (target / "deploy" / "compose.yaml").read_text() == "old"


def test_rejects_foreign_directory(tmp_path: Path) -> None:
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep")
    with pytest.raises(UsageError, match="not empty"):
        StagedDirectory(target)


def test_rejects_missing_parent(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="parent"):
        StagedDirectory(tmp_path / "absent" / "report")


def test_rejects_root_directory() -> None:
    with pytest.raises(UsageError, match="root directory"):
        StagedDirectory(Path("/"))


def _set_immutable(path: Path, immutable: bool) -> bool:
    """Set or clear the immutable attribute; return False where chattr cannot."""
    flag = "+i" if immutable else "-i"
    result = subprocess.run(
        ["chattr", flag, str(path)], capture_output=True, check=False
    )
    return result.returncode == 0


def test_rejects_immutable_target(tmp_path: Path) -> None:
    target = tmp_path / "report"
    _earlier_report(target)
    if not _set_immutable(target, True):
        pytest.skip("chattr +i is not supported on this file system")
    try:
        with pytest.raises(UsageError, match="cannot be replaced"):
            StagedDirectory(target)
    finally:
        _set_immutable(target, False)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["report"]


def test_commit_failure_keeps_staged(tmp_path: Path) -> None:
    # The target turns immutable during the run, after the start-up check.
    target = tmp_path / "report"
    _earlier_report(target)
    with StagedDirectory(target) as staged:
        (staged.path / "report.json").write_text("{}")
        if not _set_immutable(target, True):
            pytest.skip("chattr +i is not supported on this file system")
        try:
            with pytest.raises(UsageError) as raised:
                staged.commit()
        finally:
            _set_immutable(target, False)
    assert str(staged.path) in str(raised.value)
    assert (staged.path / "report.json").read_text() == "{}"
    assert (target / "report.json").read_text() == EARLIER_REPORT
