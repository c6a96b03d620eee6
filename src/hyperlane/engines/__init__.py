"""Container engines reached through the Docker Engine API."""

from hyperlane.engines.connect import connect
from hyperlane.engines.engine import CONTAINER_LABEL, Engine, EngineInfo

__all__ = ["CONTAINER_LABEL", "Engine", "EngineInfo", "connect"]
