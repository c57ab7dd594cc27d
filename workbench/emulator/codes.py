"""Bybit v5 return codes the emulator answers with, and the error that carries one.

The codes and messages are Bybit's own, so ccxt's bybit class maps them to
the same exceptions it raises against the real exchange.
"""
from __future__ import annotations

OK = 0
PARAMS_ERROR = 10001  # ccxt: BadRequest
TIMESTAMP_ERROR = 10002  # ccxt: InvalidNonce (a NetworkError)
INVALID_API_KEY = 10003  # ccxt: AuthenticationError
SIGN_ERROR = 10004  # ccxt: AuthenticationError
RATE_LIMIT = 10006  # ccxt: RateLimitExceeded
PATH_NOT_FOUND = 10017  # ccxt: BadRequest
ORDER_NOT_FOUND = 110001  # ccxt: OrderNotFound
AB_NOT_ENOUGH = 110007  # ccxt: InsufficientFunds
REDUCE_ONLY = 110017  # ccxt: InvalidOrder
LEVERAGE_NOT_MODIFIED = 110043  # ccxt: BadRequest
DUPLICATE_LINK_ID = 110072  # ccxt: InvalidOrder
MIN_ORDER_VALUE = 110094  # ccxt: InvalidOrder
SPOT_INSUFFICIENT = 170131  # ccxt: InsufficientFunds
SPOT_MIN_QTY = 170136  # ccxt: InvalidOrder
SPOT_QTY_DECIMALS = 170137  # ccxt: InvalidOrder
SPOT_MIN_VALUE = 170140  # ccxt: InvalidOrder


class BybitError(Exception):
    """A request the emulated exchange refuses: answered as ``{"retCode": code, "retMsg": msg}``."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = int(code)
        self.msg = msg


def params_error(what: str) -> BybitError:
    return BybitError(PARAMS_ERROR, f"params error: {what}")
