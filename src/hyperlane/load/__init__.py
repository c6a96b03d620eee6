"""Closed- and open-model HTTP/1.1 load generation with HDR latency histograms."""

from hyperlane.load.latency import LatencySummary
from hyperlane.load.result import ERROR_KINDS, LoadProgress, LoadResult
from hyperlane.load.runner import run_load
from hyperlane.load.spec import LoadSpec, spec_from_settings

__all__ = [
    "ERROR_KINDS",
    "LatencySummary",
    "LoadProgress",
    "LoadResult",
    "LoadSpec",
    "run_load",
    "spec_from_settings",
]
