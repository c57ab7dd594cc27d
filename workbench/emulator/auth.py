"""Bybit v5 request authentication: HMAC-SHA256 signature, API key and recv window.

A signed request carries ``X-BAPI-API-KEY``, ``X-BAPI-TIMESTAMP`` (ms),
``X-BAPI-RECV-WINDOW`` (ms, default 5000) and ``X-BAPI-SIGN``, the hex
HMAC-SHA256 of ``timestamp + api_key + recv_window + payload`` where the
payload is the raw query string of a GET or the raw JSON body of a POST.
Bybit accepts ``server_time - recv_window <= timestamp < server_time + 1000``.
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field

from .codes import INVALID_API_KEY, SIGN_ERROR, TIMESTAMP_ERROR, BybitError

DEFAULT_RECV_WINDOW = 5000
#: how far a request's timestamp may run ahead of the server clock (ms), as on Bybit
FUTURE_TOLERANCE_MS = 1000


@dataclass(frozen=True)
class ApiKey:
    """An API key and its secret; the secret never appears in reprs."""

    key: str
    secret: str = field(repr=False)

    def __repr__(self) -> str:
        return f"ApiKey(key={self.key[:4]}…, secret=***)"


def sign(secret: str, timestamp: int | str, api_key: str, recv_window: int | str, payload: str) -> str:
    """Bybit v5's signature of a request (hex HMAC-SHA256)."""
    origin = f"{timestamp}{api_key}{recv_window}{payload}"
    return hmac.new(secret.encode(), origin.encode(), hashlib.sha256).hexdigest()


def signed_headers(key: ApiKey, payload: str, timestamp_ms: int, recv_window: int = DEFAULT_RECV_WINDOW) -> dict[str, str]:
    """Headers of a correctly signed request (for tests and simple clients)."""
    return {
        "X-BAPI-API-KEY": key.key,
        "X-BAPI-TIMESTAMP": str(timestamp_ms),
        "X-BAPI-RECV-WINDOW": str(recv_window),
        "X-BAPI-SIGN": sign(key.secret, timestamp_ms, key.key, recv_window, payload),
    }


def verify(headers: Mapping[str, str], payload: str, keys: Mapping[str, str], now_ms: int) -> str:
    """Check a private request like Bybit does; return its API key or raise BybitError.

    `headers` must be case-insensitive (as http.server's are); `keys` maps API
    key to secret; `now_ms` is the server clock.
    """
    api_key = headers.get("X-BAPI-API-KEY") or ""
    if not api_key or api_key not in keys:
        raise BybitError(INVALID_API_KEY, "API key is invalid.")
    ts_text = headers.get("X-BAPI-TIMESTAMP") or ""
    recv_text = headers.get("X-BAPI-RECV-WINDOW") or str(DEFAULT_RECV_WINDOW)
    try:
        ts, recv = int(ts_text), int(recv_text)
    except ValueError:
        raise BybitError(TIMESTAMP_ERROR, "invalid request, please check your timestamp or recv_window param") from None
    if not (now_ms - recv <= ts < now_ms + FUTURE_TOLERANCE_MS):
        raise BybitError(
            TIMESTAMP_ERROR,
            "invalid request, please check your server timestamp or recv_window param. "
            f"req_timestamp[{ts}],server_timestamp[{now_ms}],recv_window[{recv}]",
        )
    given = headers.get("X-BAPI-SIGN") or ""
    expected = sign(keys[api_key], ts_text, api_key, recv_text, payload)
    if not hmac.compare_digest(given.lower(), expected):
        raise BybitError(SIGN_ERROR, f"error sign! origin_string[{ts_text}{api_key}{recv_text}{payload}]")
    return api_key
