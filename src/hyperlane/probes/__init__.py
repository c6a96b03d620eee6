"""Probes that start containers and measure how they behave."""

from hyperlane.probes.startup import (
    StartAttempt,
    StartResult,
    measure_cold_starts,
    wait_until_ready,
)

__all__ = ["StartAttempt", "StartResult", "measure_cold_starts", "wait_until_ready"]
