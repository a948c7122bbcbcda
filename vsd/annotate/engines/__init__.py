"""Engines (interim re-export until the registry lands)."""

from vsd.annotate.engines.base import EngineConfig, make_engine

__all__ = ["EngineConfig", "make_engine"]
