"""The read side of the paper exchange: ccxt unified structures for orders, trades, positions, balance, tickers, OHLCV.

A mixin of :class:`workbench.venues.paper.PaperExchange` (after
:class:`workbench.venues.paper_accounts.PaperAccounts`, whose state it reads).
"""
from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

import ccxt

from ..errors import ConfigError
from ..timeframes import timeframe_seconds
from .paper_accounts import PaperAccounts

_DAY_MS = 86_400_000
_YEAR_10000_MS = 253_402_300_800_000


def _iso8601(timestamp: int) -> str | None:
    """ccxt's iso8601 of an int (ms) from remembered parts (ccxt builds a datetime per call: ~5x slower)."""
    if 0 <= timestamp < _YEAR_10000_MS:
        day, ms = divmod(timestamp, _DAY_MS)
        return _day_text(day) + _MINUTES[ms // 60_000] + _SECONDS[ms // 1000 % 60] + _MILLIS[ms % 1000]
    return ccxt.Exchange.iso8601(timestamp)


@lru_cache(maxsize=1024)
def _day_text(day: int) -> str:
    """'YYYY-MM-DDT' of day number `day` since 1970-01-01 (UTC)."""
    return time.strftime("%Y-%m-%dT", time.gmtime(day * 86_400))


_MINUTES = [f"{h:02d}:{m:02d}:" for h in range(24) for m in range(60)]
_SECONDS = [f"{s:02d}." for s in range(60)]
_MILLIS = [f"{m:03d}Z" for m in range(1000)]


class PaperViews(PaperAccounts):
    """fetch_* methods returning ccxt's unified structures."""

    @staticmethod
    def iso8601(timestamp: Any = None) -> str | None:
        """ccxt's iso8601 (the same text), fast for int milliseconds: the paper venue formats a time per order and trade."""
        return _iso8601(timestamp) if type(timestamp) is int else ccxt.Exchange.iso8601(timestamp)

    # -- orders and trades ------------------------------------------------------------
    def _trade_out(self, t: dict[str, Any]) -> dict[str, Any]:
        fee_ = {"cost": t["fee"], "currency": t["feeCurrency"], "rate": t["feeRate"]}
        return {
            "info": dict(t["info"], clientOrderId=t["clientOrderId"]), "id": t["id"], "order": t["order"],
            "timestamp": t["timestamp"], "datetime": self.iso8601(t["timestamp"]), "symbol": t["symbol"],
            "type": t["type"], "side": t["side"], "takerOrMaker": t["takerOrMaker"], "price": t["price"],
            "amount": t["amount"], "cost": t["cost"], "fee": fee_, "fees": [dict(fee_)],
        }

    def _order_out(self, o: dict[str, Any]) -> dict[str, Any]:
        if o["trades"]:
            index = self._trades_by_id()
            trades = [self._trade_out(index[tid]) for tid in o["trades"]]
        else:
            trades = []
        filled = o["filled"]
        average = o["cost"] / (filled * (self.markets[o["symbol"]]["contractSize"] or 1.0)) if filled else None
        fee_ = {"cost": o["fee"], "currency": o["feeCurrency"]}
        info = dict(o["info"], kind=o["kind"])
        return {
            "info": info, "id": o["id"], "clientOrderId": o["clientOrderId"],
            "timestamp": o["timestamp"], "datetime": self.iso8601(o["timestamp"]),
            "lastTradeTimestamp": o["lastTradeTimestamp"], "lastUpdateTimestamp": o["lastUpdateTimestamp"],
            "symbol": o["symbol"], "type": o["type"],
            "timeInForce": "IOC" if o["kind"] == "market" else "GTC", "postOnly": False, "reduceOnly": o["reduceOnly"],
            "side": o["side"], "price": o["price"] if o["price"] is not None else average,
            "triggerPrice": o["triggerPrice"], "stopPrice": o["triggerPrice"],
            "stopLossPrice": o["stopLossPrice"], "takeProfitPrice": o["takeProfitPrice"],
            "amount": o["amount"], "cost": o["cost"], "average": average, "filled": filled,
            "remaining": 0.0 if o["status"] == "closed" else max(round(o["amount"] - filled, 12), 0.0),
            "status": o["status"], "fee": fee_, "fees": [dict(fee_)],
            "trades": trades,
        }

    def _trades_by_id(self) -> dict[str, dict[str, Any]]:
        cache = getattr(self, "_trade_index", None)
        if cache is None or getattr(self, "_trade_list", None) is not self._trades or len(cache) > len(self._trades):
            cache = {t["id"]: t for t in self._trades}
            self._trade_index, self._trade_list = cache, self._trades
        elif len(cache) < len(self._trades):  # trades are only ever appended: index the new ones
            for t in self._trades[len(cache):]:
                cache[t["id"]] = t
        return cache

    def fetch_order(self, id: str | None, symbol: str | None = None, params: dict | None = None) -> dict[str, Any]:
        return self._order_out(self._find(id, symbol, params))

    def fetch_orders(self, symbol: str | None = None, since: int | None = None, limit: int | None = None,
                     params: dict | None = None) -> list[dict[str, Any]]:
        return self._listing(self._orders.values(), symbol, since, limit, None)

    def fetch_open_orders(self, symbol: str | None = None, since: int | None = None, limit: int | None = None,
                          params: dict | None = None) -> list[dict[str, Any]]:
        ids = self._open.get(symbol, []) if symbol else [i for ids in self._open.values() for i in ids]
        return self._listing((self._orders[i] for i in sorted(ids, key=int)), symbol, since, limit, "open")

    def fetch_closed_orders(self, symbol: str | None = None, since: int | None = None, limit: int | None = None,
                            params: dict | None = None) -> list[dict[str, Any]]:
        return self._listing(self._orders.values(), symbol, since, limit, "closed")

    def fetch_canceled_orders(self, symbol: str | None = None, since: int | None = None, limit: int | None = None,
                              params: dict | None = None) -> list[dict[str, Any]]:
        return self._listing(self._orders.values(), symbol, since, limit, "canceled")

    def _listing(self, orders: Any, symbol: str | None, since: int | None, limit: int | None, status: str | None) -> list[dict[str, Any]]:
        if symbol is not None:
            self._market(symbol)
        rows = [o for o in orders if (symbol is None or o["symbol"] == symbol) and (status is None or o["status"] == status)]
        return [self._order_out(o) for o in _window(rows, since, limit)]

    def fetch_my_trades(self, symbol: str | None = None, since: int | None = None, limit: int | None = None,
                        params: dict | None = None) -> list[dict[str, Any]]:
        if symbol is not None:
            self._market(symbol)
        rows = [t for t in self._trades if symbol is None or t["symbol"] == symbol]
        return [self._trade_out(t) for t in _window(rows, since, limit)]

    # -- positions and balance --------------------------------------------------------
    def fetch_positions(self, symbols: list[str] | None = None, params: dict | None = None) -> list[dict[str, Any]]:
        if isinstance(symbols, str):
            symbols = [symbols]
        for s in symbols or ():
            self._market(s)
        return [self._position_out(s, p) for s, p in sorted(self._positions.items()) if symbols is None or s in symbols]

    def _position_out(self, symbol: str, p: dict[str, Any]) -> dict[str, Any]:
        m = self.markets[symbol]
        cs, q = m["contractSize"], abs(p["contracts"])
        mark = self._last_price(symbol) or p["entryPrice"]
        upnl = self._unrealized(symbol, p)
        mm = p["entryPrice"] * q * cs * self.maintenance_margin_rate
        collateral = p["margin"] + upnl
        return {
            "info": {"contracts": p["contracts"]}, "id": None, "symbol": symbol,
            "timestamp": p["timestamp"], "datetime": self.iso8601(p["timestamp"]),
            "lastUpdateTimestamp": p.get("lastUpdateTimestamp"), "hedged": False,
            "side": "long" if p["contracts"] > 0 else "short", "contracts": q, "contractSize": cs,
            "entryPrice": p["entryPrice"], "markPrice": mark, "lastPrice": mark, "notional": q * cs * mark,
            "leverage": p["leverage"], "collateral": collateral, "initialMargin": p["margin"],
            "initialMarginPercentage": 1.0 / p["leverage"], "maintenanceMargin": mm,
            "maintenanceMarginPercentage": self.maintenance_margin_rate, "positionMargin": p["margin"],
            "unrealizedPnl": upnl, "realizedPnl": None, "liquidationPrice": self._liquidation_price(symbol, p),
            "marginMode": "isolated", "marginRatio": mm / collateral if collateral > 0 else None,
            "percentage": upnl / p["margin"] * 100 if p["margin"] else None,
            "stopLossPrice": None, "takeProfitPrice": None,
        }

    def fetch_balance(self, params: dict | None = None) -> dict[str, Any]:
        used = self._used()
        ts = self.now()
        result: dict[str, Any] = {"info": {"cash": dict(self._cash), "used": dict(used)}, "timestamp": ts,
                                  "datetime": self.iso8601(ts)}
        for code in sorted(set(self._cash) | set(used)):
            total = max(self._cash.get(code, 0.0), 0.0)
            u = min(max(used.get(code, 0.0), 0.0), total)
            result[code] = {"free": self.number_to_string(round(total - u, 8)), "used": self.number_to_string(round(u, 8))}
        return self.safe_balance(result)

    def fetch_leverage(self, symbol: str, params: dict | None = None) -> dict[str, Any]:
        self._market(symbol)
        lev = self._lev(symbol)
        return {"info": {}, "symbol": symbol, "marginMode": "isolated", "longLeverage": lev, "shortLeverage": lev}

    # -- market data ------------------------------------------------------------------
    def fetch_ticker(self, symbol: str, params: dict | None = None) -> dict[str, Any]:
        self._market(symbol)
        last = self._last.get(symbol)
        if last is None:
            raise ccxt.BadRequest(f"paper has no price for {symbol} yet: feed a bar first (feed_bar, feed_tick or load_history).")
        ts, close = int(last[0]), last[4]
        day = [b for b in self._history(symbol)[-2000:] if b[0] > ts - _DAY_MS and b[0] <= ts] or [last]
        open_ = day[0][1]
        high = max(max(b[2] for b in day), close)
        low = min(min(b[3] for b in day), close)
        base_volume = sum(b[5] for b in day)
        quote_volume = sum(b[5] * b[4] for b in day)
        slip = self.costs.slippage
        return {
            "info": {"bar": list(last)}, "symbol": symbol, "timestamp": ts, "datetime": self.iso8601(ts),
            "high": high, "low": low, "bid": close * (1 - slip), "bidVolume": None, "ask": close * (1 + slip),
            "askVolume": None, "vwap": quote_volume / base_volume if base_volume else None, "open": open_,
            "close": close, "last": close, "previousClose": None, "change": close - open_,
            "percentage": (close - open_) / open_ * 100, "average": (open_ + close) / 2,
            "baseVolume": base_volume, "quoteVolume": quote_volume, "indexPrice": None, "markPrice": close,
        }

    def fetch_tickers(self, symbols: list[str] | None = None, params: dict | None = None) -> dict[str, Any]:
        wanted = symbols if symbols is not None else sorted(self._last)
        return {s: self.fetch_ticker(s) for s in wanted if symbols is not None or s in self.markets}

    def fetch_ohlcv(self, symbol: str, timeframe: str = "1m", since: int | None = None, limit: int | None = None,
                    params: dict | None = None) -> list[list[float]]:
        self._market(symbol)
        try:
            tf_ms = timeframe_seconds(timeframe) * 1000
        except ConfigError as exc:
            raise ccxt.BadRequest(str(exc)) from None
        bars = self._history(symbol)
        if len(bars) > 1:
            step = min(bars[i][0] - bars[i - 1][0] for i in range(max(1, len(bars) - 50), len(bars)))
            if tf_ms < step:
                raise ccxt.BadRequest(f"paper has {symbol} bars of {step // 1000}s; ask for timeframe "
                                      f"{timeframe!r} or coarser ones.")
            if tf_ms != step:
                bars = _resample(bars, tf_ms)
        rows = [list(b) for b in bars]
        if since is not None:
            rows = [b for b in rows if b[0] >= since]
            return rows[:limit] if limit else rows
        return rows[-limit:] if limit else rows


def _window(rows: list[dict[str, Any]], since: int | None, limit: int | None) -> list[dict[str, Any]]:
    if since is not None:
        rows = [r for r in rows if r["timestamp"] is not None and r["timestamp"] >= since]
        return rows[:limit] if limit else rows
    return rows[-limit:] if limit else rows


def _resample(bars: list[list[float]], tf_ms: int) -> list[list[float]]:
    out: list[list[float]] = []
    for ts, o, h, lo, c, v in bars:
        bucket = int(ts) - int(ts) % tf_ms
        if out and out[-1][0] == bucket:
            b = out[-1]
            b[2], b[3], b[4], b[5] = max(b[2], h), min(b[3], lo), c, b[5] + v
        else:
            out.append([bucket, o, h, lo, c, v])
    return out
