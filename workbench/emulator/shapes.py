"""Bybit v5 JSON shapes of the emulator's objects (strings for numbers, as Bybit sends them).

Field sets follow the real responses in ccxt's static fixtures
(../shared/data/ccxt-static/bybit.json), so ccxt parses them as it parses
the real exchange's.
"""
from __future__ import annotations

from typing import Any

from .exchange import Exchange, Execution, Order, Position
from .instruments import Instrument, decimals


def num(x: float, places: int = 8) -> str:
    """A number as Bybit writes it: fixed point, no trailing zeros."""
    text = f"{x:.{places}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def price_str(inst: Instrument, x: float) -> str:
    return f"{x:.{decimals(inst.tick)}f}" if x else "0"


def qty_str(inst: Instrument, x: float) -> str:
    return f"{x:.{decimals(inst.qty_step)}f}"


def instrument(inst: Instrument, launch_ms: int) -> dict[str, Any]:
    tick = num(inst.tick, 10)
    if inst.spot:
        return {
            "symbol": inst.id, "baseCoin": inst.base, "quoteCoin": inst.quote, "innovation": "0",
            "status": "Trading", "marginTrading": "utaOnly", "stTag": "0",
            "lotSizeFilter": {
                "basePrecision": num(inst.qty_step, 10), "quotePrecision": "0.00000001",
                "minOrderQty": num(inst.min_qty, 10), "maxOrderQty": num(inst.max_qty, 10),
                "minOrderAmt": num(inst.min_notional), "maxOrderAmt": "8000000",
            },
            "priceFilter": {"tickSize": tick},
            "riskParameters": {"priceLimitRatioX": "0.05", "priceLimitRatioY": "0.05"},
        }
    return {
        "symbol": inst.id, "contractType": "LinearPerpetual", "status": "Trading",
        "baseCoin": inst.base, "quoteCoin": inst.quote, "launchTime": str(launch_ms), "deliveryTime": "0",
        "deliveryFeeRate": "", "priceScale": str(decimals(inst.tick)),
        "leverageFilter": {"minLeverage": "1", "maxLeverage": num(inst.max_leverage, 2), "leverageStep": "0.01"},
        "priceFilter": {"minPrice": tick, "maxPrice": num(inst.tick * 2e7, 10), "tickSize": tick},
        "lotSizeFilter": {
            "maxOrderQty": num(inst.max_qty, 10), "minOrderQty": num(inst.min_qty, 10),
            "qtyStep": num(inst.qty_step, 10), "postOnlyMaxOrderQty": num(inst.max_qty, 10),
            "maxMktOrderQty": num(inst.max_qty / 10, 10), "minNotionalValue": num(inst.min_notional),
        },
        "unifiedMarginTrade": True, "fundingInterval": 480, "settleCoin": inst.quote,
        "copyTrading": "both", "upperFundingRate": "0.00375", "lowerFundingRate": "-0.00375",
        "isPreListing": False, "preListingInfo": None,
    }


def order(o: Order) -> dict[str, Any]:
    inst = o.inst
    spot = inst.spot
    leaves = max(0.0, o.qty - o.cum_qty) if o.is_open else 0.0
    out: dict[str, Any] = {
        "symbol": inst.id, "orderType": o.order_type, "orderLinkId": o.link_id, "slLimitPrice": "0",
        "orderId": o.order_id, "cancelType": "UNKNOWN" if o.status != "Cancelled" else "CancelByUser",
        "avgPrice": price_str(inst, o.avg_price) if o.cum_qty else ("0" if spot else ""),
        "stopOrderType": o.stop_order_type, "lastPriceOnCreated": price_str(inst, o.last_price_on_created),
        "orderStatus": o.status, "createType": o.create_type,
        "takeProfit": price_str(inst, o.take_profit) if o.take_profit else ("0" if spot else ""),
        "cumExecValue": num(o.cum_value), "tpslMode": "Full" if (o.take_profit or o.stop_loss) and not spot else "",
        "smpType": "None", "triggerDirection": o.trigger_direction, "blockTradeId": "",
        "cumFeeDetail": {o.fee_currency: num(o.cum_fee)} if o.cum_fee else {},
        "isLeverage": "0" if spot else "", "rejectReason": o.reject_reason,
        "price": price_str(inst, o.price), "orderIv": "", "createdTime": str(o.created), "tpTriggerBy": "",
        "positionIdx": 0, "timeInForce": o.time_in_force,
        "leavesValue": num(leaves * (o.price or o.last_price_on_created)), "updatedTime": str(o.updated),
        "side": o.side, "smpGroup": 0,
        "triggerPrice": price_str(inst, o.trigger_price) if o.trigger_price else ("0" if spot else ""),
        "tpLimitPrice": "0", "cumExecFee": num(o.cum_fee), "slTriggerBy": "", "leavesQty": qty_str(inst, leaves),
        "closeOnTrigger": False, "placeType": "", "cumExecQty": qty_str(inst, o.cum_qty),
        "reduceOnly": o.reduce_only, "qty": qty_str(inst, o.qty),
        "stopLoss": price_str(inst, o.stop_loss) if o.stop_loss else ("0" if spot else ""),
        "marketUnit": o.market_unit, "smpOrderId": "", "triggerBy": "LastPrice" if o.trigger_price else "",
    }
    return out


def execution(e: Execution) -> dict[str, Any]:
    o, inst = e.order, e.order.inst
    return {
        "symbol": inst.id, "orderType": o.order_type, "underlyingPrice": "", "orderLinkId": o.link_id,
        "orderId": o.order_id, "stopOrderType": o.stop_order_type or ("" if inst.spot else "UNKNOWN"),
        "execTime": str(e.time), "feeCurrency": e.fee_currency, "createType": o.create_type,
        "feeRate": num(e.fee_rate), "tradeIv": "", "blockTradeId": "",
        "markPrice": "" if inst.spot else price_str(inst, e.mark_price), "execPrice": price_str(inst, e.price),
        "markIv": "", "orderQty": qty_str(inst, o.qty), "orderPrice": price_str(inst, o.price),
        "execValue": num(e.value), "closedSize": "" if inst.spot else qty_str(inst, e.closed_size),
        "execType": e.exec_type, "seq": e.seq, "side": o.side, "indexPrice": "",
        "leavesQty": qty_str(inst, max(0.0, o.qty - o.cum_qty)), "isMaker": e.is_maker,
        "execFee": num(e.fee, 10), "execId": e.exec_id, "marketUnit": o.market_unit, "execQty": qty_str(inst, e.qty),
    }


def position(p: Position, mark: float) -> dict[str, Any]:
    inst = p.inst
    size = abs(p.size)
    open_ = bool(p.side)
    return {
        "positionIdx": 0, "riskId": 1, "riskLimitValue": "2000000", "symbol": inst.id, "side": p.side,
        "size": qty_str(inst, size), "avgPrice": price_str(inst, p.avg) if open_ else "0",
        "positionValue": num(p.value) if open_ else "0", "tradeMode": 0, "autoAddMargin": 0,
        "positionStatus": "Normal", "leverage": num(p.leverage, 2), "markPrice": price_str(inst, mark),
        "liqPrice": price_str(inst, p.liq_price()) if open_ else "", "bustPrice": price_str(inst, p.bust_price()) if open_ else "",
        "positionIM": num(p.im) if open_ else "0", "positionMM": num(p.value * 0.005) if open_ else "0",
        "positionBalance": num(p.im) if open_ else "0", "tpslMode": "Full",
        "takeProfit": price_str(inst, p.take_profit) if p.take_profit else "0",
        "stopLoss": price_str(inst, p.stop_loss) if p.stop_loss else "0", "trailingStop": "0",
        "sessionAvgPrice": "", "delta": "", "gamma": "", "vega": "", "theta": "",
        "unrealisedPnl": num(p.upl(mark)) if open_ else "0", "curRealisedPnl": num(p.cur_realised),
        "cumRealisedPnl": num(p.cum_realised), "adlRankIndicator": 2 if open_ else 0, "isReduceOnly": False,
        "mmrSysUpdatedTime": "", "leverageSysUpdatedTime": "", "createdTime": str(p.created),
        "updatedTime": str(p.updated or p.created), "seq": p.seq,
    }


def wallet(ex: Exchange, coin_filter: set[str] | None = None) -> dict[str, Any]:
    """The unified account's wallet-balance entry (caller holds ex.lock)."""
    prices = {"USDT": 1.0, "USDC": 1.0}
    for inst in ex.instruments.values():
        if inst.spot and inst.quote == "USDT":
            prices[inst.base] = ex.mark(inst)
    upl = ex.upl()
    pos_im, ord_im = ex.position_im(), ex.order_im()
    pos_mm = sum(p.value * 0.005 for p in ex.positions.values() if p.side)
    coins = []
    total_wallet = total_equity = 0.0
    for coin, bal in sorted(ex.coins.items()):
        usd = prices.get(coin, 0.0)
        is_usdt = coin == "USDT"
        equity = bal + (upl if is_usdt else 0.0)
        total_wallet += bal * usd
        total_equity += equity * usd
        if coin_filter and coin not in coin_filter:
            continue
        coins.append({
            "availableToBorrow": "", "bonus": "0", "accruedInterest": "0", "availableToWithdraw": "",
            "totalOrderIM": num(ord_im) if is_usdt else "0", "equity": num(equity),
            "totalPositionMM": num(pos_mm) if is_usdt else "0", "usdValue": num(equity * usd),
            "unrealisedPnl": num(upl) if is_usdt else "0", "collateralSwitch": True, "spotHedgingQty": "0",
            "borrowAmount": "0", "totalPositionIM": num(pos_im) if is_usdt else "0",
            "walletBalance": num(bal), "cumRealisedPnl": num(ex.cum_realised.get(coin, 0.0)),
            "locked": num(ex.locked(coin)), "marginCollateral": True, "coin": coin,
        })
    margin = total_equity
    return {
        "totalEquity": num(total_equity), "accountIMRate": num(pos_im / margin if margin else 0, 4),
        "totalMarginBalance": num(margin), "totalInitialMargin": num(pos_im + ord_im),
        "accountType": "UNIFIED", "totalAvailableBalance": num(max(0.0, margin - pos_im - ord_im)),
        "accountMMRate": num(pos_mm / margin if margin else 0, 4), "totalPerpUPL": num(upl),
        "totalWalletBalance": num(total_wallet), "accountLTV": "0", "totalMaintenanceMargin": num(pos_mm),
        "coin": coins,
    }


def ticker(ex: Exchange, inst: Instrument) -> dict[str, Any]:
    feed = ex.feed
    i = feed.last_closed_index(inst.feed)
    n = max(1, 86_400_000 // feed.step_ms)
    rows = [feed.bar(inst.feed, j) for j in range(max(0, i - n + 1), i + 1)]
    last = inst.round_price(rows[-1][4])
    prev24 = rows[0][1]
    prev1h = feed.bar(inst.feed, max(0, i - max(1, 3_600_000 // feed.step_ms) + 1))[1]
    vol = sum(r[5] for r in rows)
    turnover = sum(r[5] * r[4] for r in rows)
    p = lambda x: price_str(inst, inst.round_price(x))  # noqa: E731
    out = {
        "symbol": inst.id, "bid1Price": p(last - inst.tick), "bid1Size": "1.5", "ask1Price": p(last + inst.tick),
        "ask1Size": "1.2", "lastPrice": p(last), "prevPrice24h": p(prev24),
        "price24hPcnt": num((last / prev24 - 1) if prev24 else 0, 6), "highPrice24h": p(max(r[2] for r in rows)),
        "lowPrice24h": p(min(r[3] for r in rows)), "turnover24h": num(turnover, 4), "volume24h": num(vol, 4),
    }
    if not inst.spot:
        out.update({
            "indexPrice": p(last), "markPrice": p(last), "prevPrice1h": p(prev1h), "openInterest": "0",
            "openInterestValue": "0", "fundingRate": "0.0001", "nextFundingTime": str((ex.now() // 28_800_000 + 1) * 28_800_000),
            "predictedDeliveryPrice": "", "basisRate": "", "deliveryFeeRate": "", "deliveryTime": "0", "basis": "",
        })
    else:
        out["usdIndexPrice"] = p(last)
    return out


def orderbook(ex: Exchange, inst: Instrument, limit: int) -> dict[str, Any]:
    """A synthetic book: `limit` levels a tick apart around the current price, sizes growing with depth."""
    last = ex.mark(inst)
    size0 = max(inst.min_qty, round(1000 / max(last, 1e-9) / inst.qty_step) * inst.qty_step)
    bids = [[price_str(inst, inst.round_price(last - (k + 1) * inst.tick)), qty_str(inst, size0 * (1 + k))] for k in range(limit)]
    asks = [[price_str(inst, inst.round_price(last + (k + 1) * inst.tick)), qty_str(inst, size0 * (1 + k))] for k in range(limit)]
    return {"s": inst.id, "b": bids, "a": asks, "ts": ex.now(), "u": ex.now() // 1000, "seq": ex.now() // 100, "cts": ex.now()}
