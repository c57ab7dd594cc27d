"""Risk: every order of the engine passes here first; a denial is a value with reasons, never an exception.

* :class:`RiskLimits`: the configurable limits (each off with None).
* :func:`size_entry` / :func:`size_position`: how much to buy or sell for a new position.
* :func:`check_order`: allow or deny one order (exits are always allowed).
* :func:`assess`: LOW/MEDIUM/HIGH risk of an order, with its metrics.
* :class:`RiskGuard`: the pause state machine (daily loss, drawdown, cooldown, resume).
* :func:`stop_prices`: a position's stop-loss and take-profit prices.

Everything here is pure and deterministic: no I/O, and time is passed in.
"""
from .guard import RiskGuard
from .limits import SIZE_MODES, RiskLimits
from .model import Assessment, OrderIntent, PortfolioView, PositionView, RiskEvent, Verdict
from .rules import assess, check_order
from .sizing import Sizing, below_minimum, size_entry, size_position, stop_prices

__all__ = [
    "SIZE_MODES", "Assessment", "OrderIntent", "PortfolioView", "PositionView", "RiskEvent", "RiskGuard",
    "RiskLimits", "Sizing", "Verdict", "assess", "below_minimum", "check_order", "size_entry", "size_position",
    "stop_prices",
]
