"""An output directory that appears only when everything in it has been written."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from hyperlane.errors import UsageError

# The file whose presence marks a directory as a Hyperlane report.
REPORT_FILE_NAME = "report.json"
# The latency percentile distribution of the audit's load, in HdrHistogram's format.
HGRM_FILE_NAME = "latency.hgrm"

# The container's samples during the audit's load, in the recording format.
RECORDING_FILE_NAME = "metrics.jsonl"

# Everything a report directory may contain. A directory with anything else in it was
# not written by Hyperlane alone, so it is never replaced.
REPORT_ENTRIES = frozenset(
    {REPORT_FILE_NAME, HGRM_FILE_NAME, RECORDING_FILE_NAME, "deploy", "logs"}
)


def _is_hyperlane_report(directory: Path) -> bool:
    try:
        document = json.loads((directory / REPORT_FILE_NAME).read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    tool = document.get("tool") if isinstance(document, dict) else None
    return isinstance(tool, dict) and tool.get("name") == "hyperlane"


def check_output_directory(target: Path) -> None:
    """Raise UsageError unless ``target`` may be written.

    It may be written when it is absent, empty, or an earlier Hyperlane report that
    contains only the entries a report has.
    """
    if not target.exists():
        if not target.parent.is_dir():
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
    entries = {path.name for path in target.iterdir()}
    if not entries:
        return
    foreign = sorted(entries - REPORT_ENTRIES)
    if foreign or not _is_hyperlane_report(target):
        detail = (
            f"it contains {', '.join(repr(name) for name in foreign[:3])}"
            if foreign
            else f"its {REPORT_FILE_NAME} was not written by Hyperlane"
        )
        raise UsageError(
            f"output directory {str(target)!r} is not empty and is not an earlier "
            f"Hyperlane report ({detail}), so it is not replaced; choose another --out"
        )


def check_output(target: Path | None, inputs: list[Path]) -> None:
    """Raise UsageError when replacing TARGET would delete one of INPUTS."""
    if target is None:
        return
    resolved = target.resolve()
    for item in inputs:
        source = item.resolve()
        if source == resolved or resolved in source.parents:
            raise UsageError(
                f"output directory {str(target)!r} contains the input "
                f"{str(item)!r}, and writing the output replaces it; choose another "
                "--out, such as a new directory beside the input"
            )


def _check_replaceable(target: Path) -> None:
    """Raise UsageError unless TARGET, if it exists, can be renamed away and back.

    A mount point or an immutable directory would otherwise fail only after the
    whole run, when the report replaces it.
    """
    if not target.exists():
        return
    if os.path.ismount(target):
        raise UsageError(
            f"output directory {str(target)!r} is a mount point, which cannot be "
            "replaced; choose a subdirectory of it as --out"
        )
    probe = target.with_name(f".{target.name}.probe-{os.getpid()}")
    try:
        target.rename(probe)
    except OSError as error:
        raise UsageError(
            f"output directory {str(target)!r} cannot be replaced: {error.strerror}; "
            "choose another --out"
        ) from None
    probe.rename(target)


class StagedDirectory:
    """A temporary directory beside ``target`` that replaces it on ``commit()``.

    Leaving the ``with`` block without a commit removes the staging directory, so an
    interrupted or failed run never leaves a directory that looks complete.
    """

    def __init__(self, target: Path) -> None:
        self.target = target.absolute()
        if not self.target.name:
            raise UsageError(
                f"output directory {str(target)!r} is the root directory, which "
                "cannot be replaced; choose a subdirectory such as --out report"
            )
        if self.target == Path.cwd():
            raise UsageError(
                f"output directory {str(target)!r} is the current directory, which "
                "cannot be replaced; choose a subdirectory such as --out report"
            )
        check_output_directory(self.target)
        _check_replaceable(self.target)
        try:
            self.path = Path(
                tempfile.mkdtemp(
                    dir=self.target.parent, prefix=f".{self.target.name}.partial-"
                )
            )
            # mkdtemp creates the directory private to its owner; a report is not
            # secret.
            self.path.chmod(0o755)
        except OSError as error:
            raise UsageError(
                f"cannot create files beside output directory {str(target)!r}: "
                f"{error.strerror}; choose a writable --out"
            ) from None
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
        """Move the staged files to the target, replacing an earlier report there.

        Raises UsageError when the target cannot be replaced. The complete report
        then stays in the staging directory, which the message names.
        """
        check_output_directory(self.target)
        previous = self.target.with_name(f".{self.target.name}.previous")
        try:
            if self.target.exists():
                shutil.rmtree(previous, ignore_errors=True)
                self.target.rename(previous)
                try:
                    self.path.rename(self.target)
                except OSError:
                    previous.rename(self.target)
                    raise
                shutil.rmtree(previous, ignore_errors=True)
            else:
                self.path.rename(self.target)
        except OSError as error:
            self._committed = True
            raise UsageError(
                f"cannot replace output directory {str(self.target)!r}: "
                f"{error.strerror}; the complete report is in {str(self.path)!r}, "
                "move it yourself or choose another --out"
            ) from None
        self._committed = True
        return self.target
