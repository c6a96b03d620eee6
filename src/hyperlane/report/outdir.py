"""An output directory that appears only when everything in it has been written."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from hyperlane.errors import UsageError

# The file whose presence marks a directory as a complete Hyperlane report.
REPORT_FILE_NAME = "report.json"


def check_output_directory(target: Path) -> None:
    """Raise UsageError unless ``target`` may be written: absent, empty or a report."""
    if not target.exists():
        if not target.parent.exists():
            raise UsageError(
                f"the parent of output directory {str(target)!r} does not exist; "
                "create it or choose another --out"
            )
        return
    if not target.is_dir():
        raise UsageError(
            f"output path {str(target)!r} is a file, not a directory; choose another "
            "--out"
        )
    if any(target.iterdir()) and not (target / REPORT_FILE_NAME).is_file():
        raise UsageError(
            f"output directory {str(target)!r} is not empty and holds no "
            f"{REPORT_FILE_NAME}, so it is not an earlier report that may be replaced; "
            "choose another --out"
        )


class StagedDirectory:
    """A temporary directory beside ``target`` that replaces it on ``commit()``.

    Leaving the ``with`` block without a commit removes the staging directory, so an
    interrupted or failed run never leaves a directory that looks complete.
    """

    def __init__(self, target: Path) -> None:
        check_output_directory(target)
        self.target = target
        self.path = Path(
            tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.partial-")
        )
        # mkdtemp creates the directory private to its owner; a report is not secret.
        self.path.chmod(0o755)
        self._committed = False

    def __enter__(self) -> StagedDirectory:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self._committed:
            shutil.rmtree(self.path, ignore_errors=True)

    def commit(self) -> Path:
        """Move the staged files to the target, replacing an earlier report there."""
        check_output_directory(self.target)
        if self.target.exists():
            previous = self.target.with_name(f".{self.target.name}.previous")
            shutil.rmtree(previous, ignore_errors=True)
            self.target.rename(previous)
            self.path.rename(self.target)
            shutil.rmtree(previous, ignore_errors=True)
        else:
            self.path.rename(self.target)
        self._committed = True
        return self.target
