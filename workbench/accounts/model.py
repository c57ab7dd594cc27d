"""An exchange account: which venue, demo or live, and its credentials.

Credentials are either stored (encrypted by :class:`~workbench.accounts.store.AccountStore`)
or named environment variables read at use time and never written. Whenever
an account is shown (repr, str, logs, errors, CLI) its keys are masked.
"""
from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from ..errors import ConfigError, SecretsError, did_you_mean

MODES = ("demo", "live")
LOCAL_VENUES = ("paper", "ib")
#: credential fields, in ccxt's order (password is ccxt's name for a passphrase)
CREDENTIALS = ("api_key", "secret", "password", "uid")
#: identifiers shown as 'abcd…wxyz' when long; the others are never shown at all
PARTLY_SHOWN = ("api_key", "uid")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
#: option keys that would put credentials into the unencrypted part of the file
SECRET_OPTION_KEYS = frozenset(
    k.lower() for k in ("apiKey", "api_key", "secret", "password", "passphrase", "uid", "privateKey",
                        "walletAddress", "token", "login", "twofa", "accountId")
)
#: option keys that would override what the account's mode decides
MODE_OPTION_KEYS = frozenset(k.lower() for k in ("sandbox", "testnet", "isSandboxModeEnabled", "apiBackup"))
HIDDEN = "****"


def env_field(credential: str) -> str:
    """'api_key' -> 'api_key_env', the field naming its environment variable."""
    return f"{credential}_env"


@lru_cache(maxsize=1)
def valid_exchanges() -> frozenset[str]:
    """ccxt's exchange ids plus the local venues 'paper' and 'ib'."""
    import ccxt

    return frozenset(ccxt.exchanges) | frozenset(LOCAL_VENUES)


def mask(value: str | None, *, partly: bool = True) -> str | None:
    """'abcd…wxyz' for long values when `partly`, else '****'; None stays None.

    At most the first and last 4 characters are shown, and only for values of
    16 characters or more, so at most half of a key is ever revealed.
    """
    if value is None:
        return None
    if partly and len(value) >= 16:
        return f"{value[:4]}…{value[-4:]}"
    return HIDDEN


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _check_option_keys(obj: Any, where: str) -> None:
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if str(key).lower() in SECRET_OPTION_KEYS:
                raise ConfigError(
                    f"options{where} has the key {key!r}: options are stored unencrypted, so credentials "
                    "do not belong there. Pass them as api_key/secret/password/uid (or *_env variables)."
                )
            if str(key).lower() in MODE_OPTION_KEYS:
                raise ConfigError(
                    f"options{where} has the key {key!r}: the account's mode decides sandbox/testnet "
                    "(mode='demo' turns it on, mode='live' off); remove the key."
                )
            _check_option_keys(value, f"{where}[{key!r}]")
    elif isinstance(obj, list):
        for item in obj:
            _check_option_keys(item, where)


def _freeze_options(options: Any) -> Mapping[str, Any]:
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise ConfigError(f"options must be a mapping like {{'defaultType': 'swap'}}, got {type(options).__name__}.")
    try:
        text = json.dumps(options, default=_plain, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"options must be JSON data (str keys; str, number, bool, list, dict values): {exc}.") from None
    plain = json.loads(text)
    _check_option_keys(plain, "")
    return MappingProxyType(plain)


@dataclass(frozen=True, repr=False)
class Account:
    """One API account on one exchange; `mode='demo'` (testnet/sandbox) unless made 'live'.

    Each credential is either stored (``api_key=...``) or read from an
    environment variable at use time (``api_key_env='BYBIT_KEY'``), not both.
    ``options`` go to ccxt (``urls``, ``timeout`` ... at the top level, other
    keys such as ``defaultType`` into ccxt's ``options``).
    """

    name: str
    exchange: str
    mode: str = "demo"
    api_key: str | None = None
    secret: str | None = None
    password: str | None = None
    uid: str | None = None
    api_key_env: str | None = None
    secret_env: str | None = None
    password_env: str | None = None
    uid_env: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    created_at: float | None = None
    updated_at: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_RE.fullmatch(self.name):
            shown = repr(self.name) if isinstance(self.name, str) and len(self.name) <= 80 else "given"
            raise ConfigError(
                f"Account name {shown} is invalid: use 1-64 letters, digits, '_', '-' or '.', "
                "starting with a letter or digit (e.g. 'bybit-demo')."
            )
        exchanges = valid_exchanges()
        if not isinstance(self.exchange, str) or self.exchange not in exchanges:
            raise ConfigError(
                f"Unknown exchange {self.exchange!r} for account {self.name!r}."
                f"{did_you_mean(self.exchange, exchanges)} Use a ccxt exchange id "
                "(e.g. 'bybit', 'binance', 'binanceusdm', 'bitfinex'; all in ccxt.exchanges), 'paper' or 'ib'."
            )
        if self.mode not in MODES:
            raise ConfigError(
                f"Account {self.name!r}: mode must be 'demo' (testnet/sandbox, the default) or 'live' "
                f"(real money), got {self.mode!r}."
            )
        for cred in CREDENTIALS:
            self._check_credential(cred)
        object.__setattr__(self, "options", _freeze_options(self.options))
        for stamp in ("created_at", "updated_at"):
            value = getattr(self, stamp)
            if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)):
                raise ConfigError(f"Account {self.name!r}: {stamp} must be a Unix time in seconds, got {value!r}.")
            if value is not None:
                object.__setattr__(self, stamp, float(value))

    def _check_credential(self, cred: str) -> None:
        value, var = getattr(self, cred), getattr(self, env_field(cred))
        if value is not None:
            # never put the value itself into the message
            if not isinstance(value, str):
                raise ConfigError(f"Account {self.name!r}: {cred} must be a string, got {type(value).__name__}.")
            if not value:
                raise ConfigError(f"Account {self.name!r}: {cred} is empty; leave it out (None) if there is none.")
            if value != value.strip() or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
                raise ConfigError(
                    f"Account {self.name!r}: {cred} has spaces, line breaks or control characters; "
                    "copy the key again without them."
                )
        if var is not None:
            if not isinstance(var, str) or not ENV_RE.fullmatch(var):
                raise ConfigError(
                    f"Account {self.name!r}: {env_field(cred)} must be an environment variable name "
                    f"like 'BYBIT_KEY' (letters, digits, '_'), got {var!r}."
                )
            if value is not None:
                raise ConfigError(
                    f"Account {self.name!r}: give either {cred} (stored encrypted) or {env_field(cred)} "
                    "(read from the environment at use time), not both."
                )

    # -- what it is ---------------------------------------------------------
    @property
    def is_live(self) -> bool:
        """True only for accounts explicitly marked live (real money)."""
        return self.mode == "live"

    @property
    def is_demo(self) -> bool:
        return self.mode != "live"

    @property
    def has_stored_secrets(self) -> bool:
        return any(getattr(self, c) is not None for c in CREDENTIALS)

    def credential_source(self, cred: str) -> str | None:
        """'stored', '$VAR' for an environment variable, or None when unset."""
        if getattr(self, cred) is not None:
            return "stored"
        var = getattr(self, env_field(cred))
        return f"${var}" if var else None

    def credentials(self, environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
        """The plaintext credentials, environment variables resolved now.

        Raises SecretsError naming the variable (never a value) when one is unset.
        """
        env = os.environ if environ is None else environ
        out: dict[str, str | None] = {}
        for cred in CREDENTIALS:
            value, var = getattr(self, cred), getattr(self, env_field(cred))
            if var is not None:
                value = env.get(var) or None
                if value is None:
                    raise SecretsError(
                        f"Account {self.name!r} takes its {cred} from the environment variable {var}, "
                        f"which is not set. Export it in the shell that runs workbench (export {var}=...), "
                        f"or store the key instead: workbench accounts update {self.name} --set-secrets."
                    )
                value = value.strip()
            out[cred] = value
        return out

    # -- how it is shown ----------------------------------------------------
    def masked(self, cred: str) -> str | None:
        """How one credential is shown: 'abcd…wxyz', '****', '$VAR' or None."""
        value = getattr(self, cred)
        if value is not None:
            return mask(value, partly=cred in PARTLY_SHOWN)
        var = getattr(self, env_field(cred))
        return f"${var}" if var else None

    def describe(self) -> dict[str, Any]:
        """A safe-to-show dict (keys masked) for tables, JSON output and panels."""
        out: dict[str, Any] = {"name": self.name, "exchange": self.exchange, "mode": self.mode}
        for cred in CREDENTIALS:
            out[cred] = self.masked(cred)
        out["options"] = dict(self.options)
        out["created_at"] = self.created_at
        out["updated_at"] = self.updated_at
        return out

    def __repr__(self) -> str:
        parts = [f"name={self.name!r}", f"exchange={self.exchange!r}", f"mode={self.mode!r}"]
        for cred in CREDENTIALS:
            shown = self.masked(cred)
            if shown is not None:
                parts.append(f"{cred}={shown!r}")
        if self.options:
            parts.append(f"options={dict(self.options)!r}")
        return f"Account({', '.join(parts)})"

    def __str__(self) -> str:
        creds = ", ".join(f"{c} {self.masked(c)}" for c in CREDENTIALS if self.masked(c) is not None)
        return f"{self.name} ({self.exchange}, {self.mode.upper()}{', ' + creds if creds else ''})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython/Jupyter display
        printer.text(repr(self))

    def __hash__(self) -> int:
        return hash((self.name, self.exchange, self.mode))

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:  # copy/pickle: options as a plain dict
        return (_rebuild, (self.fields_dict(),))

    def fields_dict(self) -> dict[str, Any]:
        """Every field as plain data, for Account(**...): plaintext secrets included, never print it."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["options"] = json.loads(json.dumps(dict(self.options), default=_plain))
        return out


def _rebuild(data: dict[str, Any]) -> Account:
    return Account(**data)
