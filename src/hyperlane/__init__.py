"""Hyperlane: measure and right-size containerised deployments."""

__version__ = "0.1.0"
