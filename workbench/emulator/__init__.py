"""A local Bybit-compatible exchange that ccxt's real bybit class trades against (like moto for AWS).

    from workbench.emulator import Emulator
    with Emulator(timeframe="1h") as emu:          # serves on http://127.0.0.1:<free port>
        bybit = emu.client(timeout_ms=2000)        # ccxt.bybit, signed, URLs pointed at emu
        bybit.create_order("BTC/USDT:USDT", "market", "buy", 0.01, params={"clientOrderId": "a1"})
        emu.advance(bars=1)                        # the market clock moves; resting orders match
        emu.faults.add("create_order", "drop_after_accept", times=1)

See :mod:`.server` for the HTTP side, :mod:`.exchange` for matching and
accounting, :mod:`.faults` for fault kinds, :mod:`.auth` for request signing.
"""
from __future__ import annotations

from .auth import ApiKey, sign, signed_headers, verify
from .client import bybit_client, point_ccxt
from .codes import BybitError
from .exchange import Exchange, ExchangeConfig
from .faults import KINDS as FAULT_KINDS
from .faults import Faults
from .feed import PriceFeed
from .server import DEMO_API_KEY, DEMO_API_SECRET, OPERATIONS, Emulator

__all__ = [
    "DEMO_API_KEY", "DEMO_API_SECRET", "FAULT_KINDS", "OPERATIONS", "ApiKey", "BybitError", "Emulator", "Exchange",
    "ExchangeConfig", "Faults", "PriceFeed", "bybit_client", "point_ccxt", "sign", "signed_headers", "verify",
]
