"""Errors that the library raises and the CLI maps to exit codes.

Every message names what failed, the value involved and what to do next, so the CLI
prints it as it is.
"""

from hyperlane.exitcodes import ExitCode


class HyperlaneError(Exception):
    """Base class of the errors that end a command with a known exit code."""

    exit_code: ExitCode = ExitCode.UNEXPECTED_ERROR


class UsageError(HyperlaneError):
    """An invalid flag, setting or input value."""

    exit_code = ExitCode.USAGE_ERROR


class ThresholdFailed(HyperlaneError):
    """A threshold or CI gate was not met."""

    exit_code = ExitCode.THRESHOLD_FAILED


class EngineUnavailable(HyperlaneError):
    """The container engine or a metrics source such as Prometheus is unavailable.

    It could not be reached, timed out, failed with a server error (HTTP 5xx), or
    the engine rejected the request.
    """

    exit_code = ExitCode.ENGINE_UNAVAILABLE


class ImageInvalid(HyperlaneError):
    """An image is missing, or its archive cannot be read."""

    exit_code = ExitCode.IMAGE_INVALID


class ServiceNotReady(HyperlaneError):
    """A container exited, its port stayed closed, or its start timed out."""

    exit_code = ExitCode.SERVICE_NOT_READY
