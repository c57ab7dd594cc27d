"""Turn an account into the config dict a ccxt exchange is built from."""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from .model import Account


def to_ccxt_config(account: Account, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``ccxt.<exchange>(config)``'s config: credentials, options, rate limit and sandbox.

    Environment-variable credentials are resolved now (SecretsError if one is
    unset). ``sandbox`` is True unless the account is live; ccxt applies it in
    the constructor, like ``set_sandbox_mode(True)``. Option keys that ccxt's
    Exchange knows (``urls``, ``timeout``, ``hostname``, ...) go to the top level,
    the rest (``defaultType``, ...) into ccxt's ``options``. A ``urls`` override
    with an ``api`` but no ``test`` entry serves both, so a demo account
    pointed at a local emulator stays on it when sandbox mode swaps the urls.
    The dict holds plaintext secrets: hand it to ccxt, never print it.
    """
    if account.exchange == "ib":
        raise ConfigError(f"Account {account.name!r} is an Interactive Brokers account, not a ccxt one; use the IB venue.")
    import ccxt

    creds = account.credentials(environ)
    config: dict[str, Any] = {}
    ccxt_options: dict[str, Any] = {}
    for key, value in account.options.items():
        if key == "options":
            if not isinstance(value, Mapping):
                raise ConfigError(f"Account {account.name!r}: options['options'] must be a mapping, got {type(value).__name__}.")
            ccxt_options.update(copy.deepcopy(dict(value)))
        elif hasattr(ccxt.Exchange, key):
            config[key] = copy.deepcopy(value)
        else:
            ccxt_options[key] = copy.deepcopy(value)
    urls = config.get("urls")
    if isinstance(urls, dict) and "api" in urls and "test" not in urls:
        urls["test"] = copy.deepcopy(urls["api"])
    config.update(
        apiKey=creds["api_key"] or "",
        secret=creds["secret"] or "",
        password=creds["password"] or "",
        uid=creds["uid"] or "",
        options=ccxt_options,
        enableRateLimit=True,
        sandbox=not account.is_live,
    )
    return config
