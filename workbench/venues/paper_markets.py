"""Market definitions for the paper exchange: built-in specs, user specs, and markets inferred from prices.

A market spec is either a full ccxt market dict (it has a ``precision`` key) or
a short dict: ``{'symbol': 'ETH/BTC', 'price_step': 1e-6, 'amount_step': 1e-3,
'min_amount': 1e-3, 'min_cost': 1e-4, 'max_leverage': 20, 'contract_size': 1}``.
A symbol with a ``:SETTLE`` suffix ('BTC/USDT:USDT') is a linear perpetual swap.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..data import SAMPLE_SYMBOLS
from ..errors import ConfigError

#: base -> spot (price tick, amount step, min amount, min cost), swap (same + max leverage)
_BUILTIN: dict[str, tuple[tuple[float, float, float, float], tuple[float, float, float, float, int]]] = {
    "BTC": ((0.01, 0.00001, 0.00001, 5.0), (0.1, 0.001, 0.001, 5.0, 125)),
    "ETH": ((0.01, 0.0001, 0.0001, 5.0), (0.01, 0.001, 0.001, 5.0, 100)),
    "SOL": ((0.01, 0.001, 0.001, 5.0), (0.01, 0.1, 0.1, 5.0, 75)),
    "XRP": ((0.0001, 0.1, 0.1, 5.0), (0.0001, 0.1, 0.1, 5.0, 75)),
}
_SPEC_KEYS = {"symbol", "price_step", "amount_step", "min_amount", "min_cost", "max_leverage", "contract_size", "active"}


def split_symbol(symbol: str) -> tuple[str, str, str | None]:
    """('BTC', 'USDT', 'USDT') for 'BTC/USDT:USDT'; settle is None for spot."""
    if not isinstance(symbol, str) or "/" not in symbol:
        raise ConfigError(f"Market symbol must look like 'BASE/QUOTE' or 'BASE/QUOTE:SETTLE', got {symbol!r}.")
    pair, _, settle = symbol.partition(":")
    base, _, quote = pair.partition("/")
    if not base or not quote or (":" in symbol and not settle):
        raise ConfigError(f"Market symbol must look like 'BASE/QUOTE' or 'BASE/QUOTE:SETTLE', got {symbol!r}.")
    return base, quote, settle or None


def build_market(spec: Mapping[str, Any] | str, taker: float, maker: float) -> dict[str, Any]:
    """A ccxt unified market dict from a spec (see module docstring)."""
    if isinstance(spec, str):
        spec = {"symbol": spec}
    if not isinstance(spec, Mapping) or "symbol" not in spec:
        raise ConfigError(f"A market spec is a dict with at least 'symbol', got {spec!r}.")
    if "precision" in spec:
        return _complete(dict(spec), taker, maker)
    extra = set(spec) - _SPEC_KEYS
    if extra:
        raise ConfigError(f"Unknown market spec field(s) {sorted(extra)}; valid: {sorted(_SPEC_KEYS)}.")
    symbol = spec["symbol"]
    base, quote, settle = split_symbol(symbol)
    builtin = _BUILTIN.get(base) if quote == "USDT" and settle in (None, "USDT") else None
    if builtin is not None:
        tick, step, min_amount, min_cost = builtin[0] if settle is None else builtin[1][:4]
        max_lev = builtin[1][4] if settle else None
    else:
        tick = step = min_amount = min_cost = None
        max_lev = 20 if settle else None
    tick = _positive(spec, "price_step", tick)
    step = _positive(spec, "amount_step", step)
    if tick is None or step is None:
        raise ConfigError(f"Market {symbol!r} needs price_step and amount_step (or use infer_market(symbol, price)).")
    min_amount = _positive(spec, "min_amount", min_amount if min_amount is not None else step)
    min_cost = _positive(spec, "min_cost", min_cost)
    max_lev = _positive(spec, "max_leverage", max_lev)
    contract_size = _positive(spec, "contract_size", 1.0 if settle else None)
    swap = settle is not None
    market = {
        "id": f"{base}{quote}" + ("_PERP" if swap else ""),
        "symbol": symbol, "base": base, "quote": quote, "settle": settle,
        "baseId": base, "quoteId": quote, "settleId": settle,
        "type": "swap" if swap else "spot", "spot": not swap, "margin": False, "swap": swap,
        "future": False, "option": False, "index": False, "active": bool(spec.get("active", True)),
        "contract": swap, "linear": True if swap else None, "inverse": False if swap else None,
        "contractSize": contract_size, "expiry": None, "expiryDatetime": None, "strike": None, "optionType": None,
        "precision": {"amount": step, "price": tick},
        "limits": {
            "leverage": {"min": 1.0 if swap else None, "max": float(max_lev) if swap and max_lev else None},
            "amount": {"min": min_amount, "max": None},
            "price": {"min": None, "max": None},
            "cost": {"min": min_cost, "max": None},
        },
        "marginModes": {"cross": False, "isolated": swap},
        "created": None,
        "info": {"source": "paper", **{k: v for k, v in spec.items() if k != "symbol"}},
    }
    return _complete(market, taker, maker)


def _complete(market: dict[str, Any], taker: float, maker: float) -> dict[str, Any]:
    market.setdefault("taker", taker)
    market.setdefault("maker", maker)
    market.setdefault("info", {})
    return market


def _positive(spec: Mapping[str, Any], key: str, default: float | None) -> float | None:
    v = spec.get(key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ConfigError(f"Market spec {spec.get('symbol')!r}: {key} must be a positive number, got {v!r}.")
    return float(v)


def default_markets() -> list[str]:
    """The built-in symbols: spot and USDT-margined perpetual for every sample symbol."""
    return [s for sym in SAMPLE_SYMBOLS for s in (sym, f"{sym}:USDT")]


def infer_market(symbol: str, price: float) -> dict[str, Any]:
    """A spec for an unknown `symbol` from a reference price (about 5 significant digits of price tick)."""
    if not math.isfinite(price) or price <= 0:
        raise ConfigError(f"Cannot infer a market for {symbol!r} from price {price!r}; pass a market spec.")
    tick = float(f"1e{math.floor(math.log10(price)) - 5}")
    step = float(f"1e{math.floor(math.log10(1.0 / price)) - 3}")
    return {"symbol": symbol, "price_step": tick, "amount_step": step, "min_amount": step}
