"""The tunable rules of a sizing recommendation."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from hyperlane.errors import UsageError

MIB = 2**20

# Docker's daemon rejects a memory limit below 6 MiB (linuxMinMemory in moby's
# daemon/daemon_unix.go), so a lower floor could write files that fail to start.
MIN_MEMORY_FLOOR_BYTES = 6 * MIB

# CPU requests are whole millicores, so a floor of at least 1m keeps every CPU request
# above 0m.
MIN_CPU_FLOOR_CORES = 0.001


@dataclass(frozen=True)
class SizingPolicy:
    """Percentile, margin, floors and history minimums of a recommendation.

    The defaults follow KRR's "simple" strategy and KRR's minimum values, which
    docs/sizing.md describes.
    """

    cpu_percentile: float = 95.0
    """Nearest-rank percentile of the CPU samples that sets the CPU request, in
    (0, 100]."""

    memory_margin_ratio: float = 0.15
    """Margin added to the peak working set, as a ratio (0.15 is 15 %)."""

    cpu_floor_cores: float = 0.010
    """Smallest CPU request, in cores (0.010 is 10m)."""

    memory_floor_bytes: int = 100 * MIB
    """Smallest memory request and limit, in bytes."""

    min_history_samples: int = 60
    """Samples needed for a measured recommendation, below which it is an estimate."""

    min_history_seconds: float = 60.0
    """Seconds of load needed for a measured recommendation, below which it is an
    estimate."""

    def __post_init__(self) -> None:
        _require_finite(
            "cpu_percentile", self.cpu_percentile, "above 0 and at most 100"
        )
        if not 0 < self.cpu_percentile <= 100:
            raise UsageError(
                f"Invalid cpu_percentile {self.cpu_percentile!r}: "
                "pass a percentile above 0 and at most 100."
            )
        _require_finite("memory_margin_ratio", self.memory_margin_ratio, "of 0 or more")
        if self.memory_margin_ratio < 0:
            raise UsageError(
                f"Invalid memory_margin_ratio {self.memory_margin_ratio!r}: "
                "pass a ratio of 0 or more, such as 0.15 for 15 %."
            )
        _require_finite("cpu_floor_cores", self.cpu_floor_cores, "of at least 0.001")
        if self.cpu_floor_cores < MIN_CPU_FLOOR_CORES:
            raise UsageError(
                f"Invalid cpu_floor_cores {self.cpu_floor_cores!r}: "
                "pass at least 0.001 cores (1m), the smallest CPU request."
            )
        if self.memory_floor_bytes < MIN_MEMORY_FLOOR_BYTES:
            raise UsageError(
                f"Invalid memory_floor_bytes {self.memory_floor_bytes!r}: "
                f"pass at least {MIN_MEMORY_FLOOR_BYTES} bytes (6 MiB), "
                "Docker's minimum memory limit."
            )
        if self.min_history_samples < 1:
            raise UsageError(
                f"Invalid min_history_samples {self.min_history_samples!r}: "
                "pass 1 or more."
            )
        _require_finite("min_history_seconds", self.min_history_seconds, "of 0 or more")
        if self.min_history_seconds < 0:
            raise UsageError(
                f"Invalid min_history_seconds {self.min_history_seconds!r}: "
                "pass 0 or more seconds."
            )

    def to_dict(self) -> dict[str, float | int]:
        """Return the policy as a JSON-ready dict keyed by field name."""
        return dataclasses.asdict(self)


def _require_finite(name: str, value: float, expected: str) -> None:
    """Raise UsageError when a policy number is NaN or infinite."""
    if not math.isfinite(value):
        raise UsageError(f"Invalid {name} {value!r}: pass a finite number {expected}.")
