"""Process exit codes of the ``hyperlane`` command, in one place."""

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit status of a ``hyperlane`` command."""

    SUCCESS = 0
    UNEXPECTED_ERROR = 1
    USAGE_ERROR = 2
    THRESHOLD_FAILED = 3
    ENGINE_UNAVAILABLE = 4
    IMAGE_INVALID = 5
    SERVICE_NOT_READY = 6
    INTERRUPTED = 130
