"""Point ccxt's own bybit class at an emulator (or any Bybit-compatible base URL)."""
from __future__ import annotations

from typing import Any

import ccxt


def point_ccxt(exchange: ccxt.Exchange, base_url: str) -> ccxt.Exchange:
    """Send every API group of a ccxt bybit instance to `base_url` ('http://127.0.0.1:8123').

    ccxt.bybit builds request URLs as ``urls['api'][group] + '/' + path``
    (groups: spot, futures, v2, public, private), so replacing that dict is
    all it takes; signing and parsing stay ccxt's own.
    """
    base = base_url.rstrip("/")
    exchange.urls["api"] = {group: base for group in exchange.urls["api"]}
    return exchange


def bybit_client(base_url: str, api_key: str, secret: str, timeout_ms: int = 10_000, **config: Any) -> ccxt.bybit:
    """A ccxt.bybit instance signed with `api_key`/`secret` that talks to `base_url`."""
    exchange = ccxt.bybit({"apiKey": api_key, "secret": secret, "timeout": int(timeout_ms), **config})
    return point_ccxt(exchange, base_url)
