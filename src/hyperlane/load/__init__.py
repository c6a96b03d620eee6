"""Closed- and open-model HTTP/1.1 load generation with HDR latency histograms.

``spec_from_settings`` lives in ``hyperlane.load.config``, outside this package's
namespace, so that a load run does not import pydantic-settings.
"""

from hyperlane.load.latency import LatencySummary
from hyperlane.load.result import (
    ERROR_KINDS,
    EndpointResult,
    LoadProgress,
    LoadResult,
    TimelineSecond,
)
from hyperlane.load.runner import run_load
from hyperlane.load.spec import Endpoint, LoadSpec, Stage

__all__ = [
    "ERROR_KINDS",
    "Endpoint",
    "EndpointResult",
    "LatencySummary",
    "LoadProgress",
    "LoadResult",
    "LoadSpec",
    "Stage",
    "TimelineSecond",
    "run_load",
]
