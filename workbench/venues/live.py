"""Venues built from accounts: the engine's venue factory for 'paper', 'ccxt' and 'ib' deployments.

Demo (sandbox/testnet) is the default everywhere: a ccxt exchange is built
in sandbox mode unless its account is marked live. A live order needs all
three of: an account marked live, a deployment in ``mode='live'``, and
``live_confirmed=True``; anything else is refused with
:class:`~workbench.errors.LiveTradingRefused`, recorded in the store (audit
and risk event) before the deployment is created.

    engine = Engine(store, venue_factory=venue_factory(store, AccountStore(accounts_path())))
    engine.deploy({"strategy": "sma_cross", "symbols": ["BTC/USDT:USDT"], "venue": "ccxt", "account": "bybit-demo"})
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, LiveTradingRefused, unknown
from .base import OrderRequest
from .ccxt_venue import CcxtVenue, RetryPolicy

if TYPE_CHECKING:
    import ccxt

    from ..accounts import Account, AccountStore
    from ..engine.spec import DeploymentSpec
    from ..store import Store
    from .base import Venue

#: markets are reloaded this often (seconds) so new listings and changed steps are seen
DEFAULT_MARKETS_TTL = 3600.0
#: exchanges whose demo is a paper sub-account on the live URL (no sandbox URL in ccxt): symbols must be test ones
PAPER_SUBACCOUNT = {"bitfinex": "TEST"}


def ccxt_exchange(account: Account, *, environ: Mapping[str, str] | None = None, timeout: float | None = None) -> ccxt.Exchange:
    """ccxt's exchange class for `account`, sandbox/testnet on unless the account is live.

    An exchange with no sandbox in ccxt is refused for a demo account, except
    those whose demo is a paper sub-account (bitfinex: keys of its paper
    sub-account and TEST symbols only; see :class:`PaperSubaccountVenue`).
    `timeout` is the request timeout in seconds.
    """
    import ccxt

    from ..accounts import to_ccxt_config

    if account.exchange in ("paper", "ib"):
        raise ConfigError(f"Account {account.name!r} is a {account.exchange!r} account, not a ccxt exchange; use venue={account.exchange!r}.")
    cls = getattr(ccxt, account.exchange, None)
    if cls is None:
        raise unknown("ccxt exchange", account.exchange, ccxt.exchanges)
    config = to_ccxt_config(account, environ)
    if timeout is not None:
        config["timeout"] = int(float(timeout) * 1000)
    has_test = bool((cls().describe().get("urls") or {}).get("test")) or bool((config.get("urls") or {}).get("test"))
    if config.get("sandbox") and not has_test:
        if account.exchange not in PAPER_SUBACCOUNT:
            raise ConfigError(
                f"ccxt has no sandbox/testnet for {account.exchange!r}, so the demo account {account.name!r} cannot be used: "
                "point options.urls at a test server, or mark the account live (real money) if you mean it."
            )
        config["sandbox"] = False  # its demo is the paper sub-account's keys; symbols are checked per order
    return cls(config)


class PaperSubaccountVenue(CcxtVenue):
    """A demo account on an exchange whose paper trading is a sub-account (bitfinex): test symbols only."""

    def __init__(self, *args: Any, test_prefix: str = "TEST", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.test_prefix = test_prefix

    def create_order(self, request: OrderRequest) -> dict[str, Any]:
        if not request.symbol.startswith(self.test_prefix):
            raise LiveTradingRefused(
                f"{self.id} is a demo (paper sub-account) account: only {self.test_prefix}* symbols "
                f"(e.g. {self.test_prefix}BTC/{self.test_prefix}USD) trade there, not {request.symbol!r}. "
                "Use a test symbol, or a live account with live confirmation."
            )
        return super().create_order(request)


def check_live(account: Account, mode: str, live_confirmed: bool) -> None:
    """Raise LiveTradingRefused unless account, mode and confirmation agree.

    live account + mode 'live' + confirmed: allowed. demo account + mode not
    'live': allowed (sandbox). Every other combination is refused.
    """
    if account.is_live:
        if mode != "live":
            raise LiveTradingRefused(
                f"Account {account.name!r} is a LIVE (real money) account but the deployment is mode={mode!r}: "
                "deploy with mode='live' and live_confirmed=True (CLI: --mode live --confirm-live), or use a demo account."
            )
        if not live_confirmed:
            raise LiveTradingRefused(
                f"Account {account.name!r} trades real money: confirm it with live_confirmed=True "
                "(CLI: --confirm-live) after reviewing the deployment and its risk limits."
            )
    elif mode == "live":
        raise LiveTradingRefused(
            f"mode='live' needs an account marked live, and {account.name!r} is a demo account: "
            "deploy with mode='paper' to trade its sandbox, or mark a real account live "
            f"(workbench accounts update {account.name} --mode live)."
        )


def account_venue(
    account: Account,
    *,
    live_confirmed: bool = False,
    venue_id: str | None = None,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    markets_ttl: float | None = DEFAULT_MARKETS_TTL,
    timeout: float | None = None,
    environ: Mapping[str, str] | None = None,
    ib_factory: Callable[[], Any] | None = None,
) -> Venue:
    """The venue of one account (ccxt or IB), live only when the account is live and confirmed."""
    live = account.is_live
    confirmed = bool(live and live_confirmed)
    vid = venue_id or f"{account.exchange}:{account.name}"
    if account.exchange == "ib":
        from .ib import IBVenue

        return IBVenue.from_account(account, live_confirmed=confirmed, venue_id=vid, ib_factory=ib_factory,
                                    timeout=timeout if timeout is not None else 10.0)
    exchange = ccxt_exchange(account, environ=environ, timeout=timeout)
    cls = PaperSubaccountVenue if (not live and account.exchange in PAPER_SUBACCOUNT) else CcxtVenue
    kwargs: dict[str, Any] = {"test_prefix": PAPER_SUBACCOUNT[account.exchange]} if cls is PaperSubaccountVenue else {}
    return cls(exchange, venue_id=vid, live=live, live_confirmed=confirmed, retry=retry, sleep=sleep,
               markets_ttl=markets_ttl, **kwargs)


def venue_factory(
    store: Store,
    accounts: AccountStore | None = None,
    *,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    markets_ttl: float | None = DEFAULT_MARKETS_TTL,
    timeout: float | None = None,
    environ: Mapping[str, str] | None = None,
    ib_factory: Callable[[], Any] | None = None,
) -> Callable[[str, DeploymentSpec], Venue]:
    """``Engine(venue_factory=...)``: paper venues per deployment; ccxt/IB venues from `accounts`.

    `accounts` defaults to the account store in the home folder. Deployments
    on one account share one ccxt exchange instance, so its rate limit holds
    across them. A live-safety refusal is recorded (audit ``live_refused`` and
    a risk event) and raised, so the deployment is not created.
    """
    exchanges: dict[str, Any] = {}

    def make(dep_id: str, spec: DeploymentSpec) -> Venue:
        if spec.venue == "paper":
            from .paper_venue import paper_venue

            return paper_venue(dep_id, spec, store)
        account = _account(accounts, spec)
        expected = "ib" if spec.venue == "ib" else None
        if expected == "ib" and account.exchange != "ib":
            raise ConfigError(f"venue='ib' needs an Interactive Brokers account; {account.name!r} is on {account.exchange!r}: use venue='ccxt'.")
        if spec.venue == "ccxt" and account.exchange in ("ib", "paper"):
            raise ConfigError(f"Account {account.name!r} is a {account.exchange!r} account: deploy with venue={account.exchange!r}.")
        try:
            check_live(account, spec.mode, spec.live_confirmed)
        except LiveTradingRefused as exc:
            details = {"account": account.name, "exchange": account.exchange, "account_mode": account.mode,
                       "mode": spec.mode, "live_confirmed": spec.live_confirmed}
            store.audit("engine", "live_refused", dep_id, details | {"reason": str(exc)})
            store.add_risk_event(dep_id, "live_refused", str(exc), details)
            raise
        if account.exchange == "ib":
            return account_venue(account, live_confirmed=spec.live_confirmed, timeout=timeout, ib_factory=ib_factory)
        venue = account_venue(account, live_confirmed=spec.live_confirmed, retry=retry, sleep=sleep,
                              markets_ttl=markets_ttl, timeout=timeout, environ=environ)
        shared = exchanges.get(account.name)
        if shared is not None and getattr(venue, "exchange", None) is not None:
            venue.exchange = shared  # one instance per account: one rate limiter, one market cache
        elif getattr(venue, "exchange", None) is not None:
            exchanges[account.name] = venue.exchange
        return venue

    return make


def _account(accounts: AccountStore | None, spec: DeploymentSpec) -> Account:
    if not spec.account:
        raise ConfigError(f"venue={spec.venue!r} needs an account: pass account='<name>' (see `workbench accounts list`).")
    if accounts is None:
        from ..accounts import AccountStore, accounts_path

        accounts = AccountStore(accounts_path())
    return accounts.get(spec.account)


def emulator_account(emulator: Any, name: str = "bybit-emulator", *, api_key: str | None = None,
                     secret: str | None = None, timeout: float | None = None, rate_limit_ms: int | None = None) -> Account:
    """A demo 'bybit' account pointed at a local emulator (an Emulator or its URL): the demo's live-like path.

    Every ccxt API group is sent to the emulator, in both the live and the test
    URL sets, so sandbox mode stays on it. Keys default to the emulator's demo key.
    `rate_limit_ms` overrides ccxt's client-side throttle (tests on loopback use 1).
    """
    import ccxt

    from ..accounts import Account
    from ..emulator import DEMO_API_KEY, DEMO_API_SECRET

    url = emulator if isinstance(emulator, str) else emulator.url
    if not url.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]")):
        raise ConfigError(f"An emulator account must point at loopback (http://127.0.0.1:<port>), got {url!r}.")
    groups = {group: url.rstrip("/") for group in ccxt.bybit().urls["api"]}
    options: dict[str, Any] = {"urls": {"api": groups, "test": dict(groups)}}
    if timeout is not None:
        options["timeout"] = int(timeout * 1000)
    if rate_limit_ms is not None:
        options["rateLimit"] = int(rate_limit_ms)
    return Account(name=name, exchange="bybit", mode="demo", api_key=api_key or DEMO_API_KEY,
                   secret=secret or DEMO_API_SECRET, options=options)
