"""Exchange accounts: demo or live, secrets encrypted at rest, keys masked whenever shown.

>>> store = AccountStore(home_dir() / "accounts.json")            # doctest: +SKIP
>>> store.add("bybit-demo", exchange="bybit", api_key_env="BYBIT_KEY", secret_env="BYBIT_SECRET")  # doctest: +SKIP
>>> ccxt.bybit(to_ccxt_config(store.get("bybit-demo")))        # sandbox on: demo by default  # doctest: +SKIP
"""
from __future__ import annotations

from .ccxt_config import to_ccxt_config
from .keys import KEY_ENV, StoreKey
from .model import CREDENTIALS, MODES, Account, mask, valid_exchanges
from .paths import accounts_path, home_dir
from .store import AccountStore

__all__ = [
    "CREDENTIALS",
    "KEY_ENV",
    "MODES",
    "Account",
    "AccountStore",
    "StoreKey",
    "accounts_path",
    "home_dir",
    "mask",
    "to_ccxt_config",
    "valid_exchanges",
]
