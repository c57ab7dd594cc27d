"""The paper venue of a deployment: a PaperExchange behind the CcxtVenue, its state kept in the store."""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .ccxt_venue import CcxtVenue

if TYPE_CHECKING:
    from ..engine.spec import DeploymentSpec
    from ..store import Store


def quote_of(symbol: str) -> str:
    """'BTC/USDT:USDT' -> 'USDT'."""
    return symbol.split("/")[1].split(":")[0]


def paper_venue(
    dep_id: str,
    spec: DeploymentSpec,
    store: Store,
    ref_prices: Mapping[str, float] | None = None,
    markets: list[Any] | None = None,
) -> CcxtVenue:
    """A paper exchange for one deployment, restored from the store if it traded before.

    Symbols the paper exchange does not know (say ETH/BTC from a CSV) get a
    market inferred from `ref_prices` (a typical price of each).
    """
    from .paper import PaperExchange
    from .paper_markets import default_markets, infer_market

    venue_id = f"paper:{dep_id}"
    state = store.load_venue_state(venue_id)
    quote = quote_of(spec.symbols[0])
    given = {m["symbol"] if isinstance(m, Mapping) else m: m for m in (markets or [])}
    specs: list[Any] = [given.pop(m, m) for m in default_markets()] + list(given.values())
    known = {m["symbol"] if isinstance(m, Mapping) else m for m in specs}
    for sym in spec.symbols:
        if sym not in known and ref_prices and sym in ref_prices:
            specs.append(infer_market(sym, float(ref_prices[sym])))
    exchange = PaperExchange({
        "balance": {quote: spec.initial_cash},
        "costs": spec.costs,
        "state": state,
        "markets": specs,
        "on_delta": lambda delta: store.save_venue_delta(venue_id, delta),
        "defer": lambda deliver: store.before_commit(venue_id, deliver),
    })
    exchange.persisted_in = store  # its deltas join the engine's transactions (see Store.batch)
    return CcxtVenue(exchange, venue_id=venue_id)
