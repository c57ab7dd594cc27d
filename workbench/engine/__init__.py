"""The engine: deployments of a strategy on many symbols, each order through risk first."""
from .clock import Clock, ManualClock, SystemClock
from .core import Engine
from .replay import ReplayResult, replay, result_of
from .spec import DeploymentSpec

__all__ = ["Clock", "DeploymentSpec", "Engine", "ManualClock", "ReplayResult", "SystemClock", "replay", "result_of"]
