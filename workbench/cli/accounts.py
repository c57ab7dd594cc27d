"""`workbench accounts add|list|show|update|remove`: exchange API accounts.

Secrets are never taken from the command line (argv leaks into shell history
and `ps`): they are asked for without echo, piped with ``--secrets-stdin``, or
left in environment variables named with ``--api-key-env`` and friends.
Everything printed shows masked keys. Accounts are demo unless ``--live``.
"""
from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import datetime
from typing import Any

from ..accounts import CREDENTIALS, Account, AccountStore, accounts_path
from ..accounts.model import LOCAL_VENUES, env_field
from ..errors import ConfigError

#: names accepted for each credential on stdin (ccxt's spelling too)
STDIN_NAMES = {
    "api_key": "api_key", "apikey": "api_key", "key": "api_key",
    "secret": "secret", "api_secret": "secret",
    "password": "password", "passphrase": "password",
    "uid": "uid",
}
LABELS = {"api_key": "API key", "secret": "API secret", "password": "passphrase/password", "uid": "uid"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("accounts", help="exchange API accounts (demo unless --live): add, list, show, update, remove")
    p.set_defaults(handler=lambda args: _usage(p))
    actions = p.add_subparsers(dest="accounts_action", metavar="ACTION")

    add = actions.add_parser("add", help="add an account; secrets are asked for, piped on stdin or named env vars")
    add.add_argument("name", help="a unique name such as bybit-demo")
    add.add_argument("--exchange", required=True, help="a ccxt exchange id (bybit, binance, binanceusdm, bitfinex, ...), paper or ib")
    _mode_flags(add, default_help="demo (testnet/sandbox) is the default")
    _credential_flags(add)
    add.add_argument("--no-secrets", action="store_true", help="store no credentials (public data only, or add them later)")
    _option_flags(add)
    add.set_defaults(handler=run_add)

    ls = actions.add_parser("list", help="all accounts, keys masked")
    ls.add_argument("--json", action="store_true", help="JSON output (keys masked)")
    ls.set_defaults(handler=run_list)

    show = actions.add_parser("show", help="one account, keys masked")
    show.add_argument("name")
    show.add_argument("--json", action="store_true", help="JSON output (keys masked)")
    show.set_defaults(handler=run_show)

    up = actions.add_parser("update", help="change an account (mode, env vars, secrets, options)")
    up.add_argument("name")
    up.add_argument("--exchange", default=None)
    _mode_flags(up, default_help="unchanged unless given")
    _credential_flags(up)
    up.add_argument("--set-secrets", action="store_true", help="store new secrets, asked for without echo (or with --secrets-stdin)")
    _option_flags(up)
    up.add_argument("--unset-option", action="append", default=[], metavar="KEY", help="remove an option")
    up.set_defaults(handler=run_update)

    rm = actions.add_parser("remove", help="delete an account")
    rm.add_argument("name")
    rm.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    rm.set_defaults(handler=run_remove)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _mode_flags(p: argparse.ArgumentParser, default_help: str) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--live", dest="mode", action="store_const", const="live", help=f"a real-money account ({default_help})")
    group.add_argument("--demo", dest="mode", action="store_const", const="demo", help="a testnet/sandbox/demo account")
    p.set_defaults(mode=None)


def _credential_flags(p: argparse.ArgumentParser) -> None:
    for cred in CREDENTIALS:
        flag = "--" + env_field(cred).replace("_", "-")
        p.add_argument(flag, dest=env_field(cred), default=None, metavar="VAR",
                       help=f"read the {LABELS[cred]} from this environment variable at use time (never stored)")
    p.add_argument("--secrets-stdin", action="store_true",
                   help="read secrets from stdin: 'api_key=...' lines or a JSON object (for scripts)")


def _option_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a ccxt option (VALUE is JSON or a string), e.g. timeout=10000 or urls='{\"api\": ...}'")
    p.add_argument("--default-type", default=None, metavar="TYPE", help="ccxt defaultType, e.g. swap or spot")


def _store(args: argparse.Namespace) -> AccountStore:
    return AccountStore(accounts_path(getattr(args, "home", None)))


# -- secrets -------------------------------------------------------------------
def prompt_secret(label: str) -> str:
    """Ask for one secret without echo; refuse when there is no terminal to ask on."""
    if not sys.stdin or not sys.stdin.isatty():
        raise ConfigError(
            "No terminal to ask for secrets on. Pipe them with --secrets-stdin, name environment "
            "variables with --api-key-env/--secret-env, or use --no-secrets."
        )
    return getpass.getpass(f"{label} (input hidden): ").strip()


def read_stdin_secrets(text: str) -> dict[str, str]:
    """Secrets from 'name=value' lines or a JSON object; error messages never show values."""
    text = text.strip()
    pairs: list[tuple[str, Any]] = []
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            raise ConfigError("--secrets-stdin: stdin starts with '{' but is not valid JSON.") from None
        if not isinstance(data, dict):
            raise ConfigError("--secrets-stdin: the JSON must be an object like {\"api_key\": ..., \"secret\": ...}.")
        pairs = list(data.items())
    else:
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if "=" not in line:
                raise ConfigError(f"--secrets-stdin: line {number} is not 'name=value' (names: api_key, secret, password, uid).")
            name, value = line.split("=", 1)
            pairs.append((name, value))
    out: dict[str, str] = {}
    for name, value in pairs:
        cred = STDIN_NAMES.get(str(name).strip().lower().replace("-", "_"))
        if cred is None:
            raise ConfigError(f"--secrets-stdin: unknown name {str(name).strip()!r}; use api_key, secret, password or uid.")
        if not isinstance(value, str):
            raise ConfigError(f"--secrets-stdin: {cred} must be a string.")
        if value.strip():
            out[cred] = value.strip()
    if not out:
        raise ConfigError("--secrets-stdin: stdin held no secrets (expected lines like 'api_key=...' and 'secret=...').")
    return out


def required_credentials(exchange: str) -> list[str]:
    """The credentials ccxt says `exchange` needs (api_key and secret for most)."""
    if exchange in LOCAL_VENUES:
        return []
    import ccxt

    needs = dict(getattr(ccxt, exchange)().requiredCredentials)
    names = {"api_key": "apiKey", "secret": "secret", "password": "password", "uid": "uid"}
    return [c for c in CREDENTIALS if needs.get(names[c])]


def gather_secrets(args: argparse.Namespace, exchange: str, name: str) -> dict[str, str]:
    """Stored secrets for `name`: from stdin, else asked for those not named by env vars."""
    from_env = {c for c in CREDENTIALS if getattr(args, env_field(c), None)}
    if args.secrets_stdin:
        secrets = read_stdin_secrets(sys.stdin.read())
        both = sorted(set(secrets) & from_env)
        if both:
            raise ConfigError(f"{', '.join(both)} given both on stdin and as an environment variable; give one.")
        return secrets
    secrets: dict[str, str] = {}
    for cred in required_credentials(exchange):
        if cred in from_env:
            continue
        value = prompt_secret(f"{LABELS[cred]} for {name!r}")
        if not value:
            raise ConfigError(f"No {LABELS[cred]} entered; nothing was saved.")
        secrets[cred] = value
    return secrets


def _options(args: argparse.Namespace, base: dict[str, Any] | None = None) -> dict[str, Any]:
    options = dict(base or {})
    for item in args.option:
        if "=" not in item:
            raise ConfigError(f"--option {item!r}: write KEY=VALUE, e.g. --option timeout=10000.")
        key, raw = item.split("=", 1)
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        options[key.strip()] = value
    if args.default_type:
        options["defaultType"] = args.default_type
    for key in getattr(args, "unset_option", []):
        if key not in options:
            raise ConfigError(f"--unset-option {key!r}: no such option (options: {', '.join(sorted(options)) or 'none'}).")
        del options[key]
    return options


def _live_warning(account: Account) -> None:
    if account.is_live:
        print(
            f"warning: {account.name!r} is a LIVE account: orders through it use real money. "
            "Each live deployment or order still needs an explicit confirmation.",
            file=sys.stderr,
        )


# -- commands ------------------------------------------------------------------
def run_add(args: argparse.Namespace) -> int:
    store = _store(args)
    fields: dict[str, Any] = {c_env: getattr(args, c_env) for c_env in map(env_field, CREDENTIALS)}
    # validate name, exchange and mode before asking for any secret
    probe = Account(name=args.name, exchange=args.exchange, mode=args.mode or "demo", options=_options(args), **fields)
    if probe.name in store:
        raise ConfigError(f"An account named {probe.name!r} already exists; use `workbench accounts update {probe.name}`.")
    secrets = {} if args.no_secrets else gather_secrets(args, probe.exchange, probe.name)
    added = store.add(Account(**{**probe.fields_dict(), **secrets}))
    print(f"Added {added} to {store.path}")
    info = store.key_info() or {}
    print(f"Secrets encrypted with the key in {info.get('where', '?')}" if added.has_stored_secrets else "No secrets stored.")
    _live_warning(added)
    return 0


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def run_list(args: argparse.Namespace) -> int:
    store = _store(args)
    accounts = store.list()
    if args.json:
        print(json.dumps([a.describe() for a in accounts], indent=2, ensure_ascii=False))
        return 0
    if not accounts:
        print(f"No accounts in {store.path}. Add one with: workbench accounts add NAME --exchange bybit")
        return 0
    header = ["NAME", "EXCHANGE", "MODE", "API KEY", "SECRET", "PASSWORD", "UPDATED"]
    rows = [
        [a.name, a.exchange, a.mode.upper(), a.masked("api_key") or "-", a.masked("secret") or "-",
         a.masked("password") or "-", _when(a.updated_at)]
        for a in accounts
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def run_show(args: argparse.Namespace) -> int:
    store = _store(args)
    account = store.get(args.name)
    if args.json:
        print(json.dumps(account.describe(), indent=2, ensure_ascii=False))
        return 0
    print(f"name:      {account.name}")
    print(f"exchange:  {account.exchange}")
    print(f"mode:      {account.mode.upper()}{'  (real money)' if account.is_live else '  (testnet/sandbox)'}")
    for cred in CREDENTIALS:
        print(f"{cred + ':':<11}{account.masked(cred) or '-'}")
    print(f"options:   {json.dumps(dict(account.options), sort_keys=True)}")
    print(f"created:   {_when(account.created_at)}")
    print(f"updated:   {_when(account.updated_at)}")
    print(f"store:     {store.path}")
    return 0


def run_update(args: argparse.Namespace) -> int:
    store = _store(args)
    old = store.get(args.name)
    changes: dict[str, Any] = {}
    if args.exchange is not None:
        changes["exchange"] = args.exchange
    if args.mode is not None:
        changes["mode"] = args.mode
    for c_env in map(env_field, CREDENTIALS):
        if getattr(args, c_env) is not None:
            changes[c_env] = getattr(args, c_env)
    if args.option or args.default_type or args.unset_option:
        changes["options"] = _options(args, dict(old.options))
    if args.set_secrets or args.secrets_stdin:
        Account(**{**old.fields_dict(), **changes, **{c: None for c in CREDENTIALS}})  # check the rest before asking
        changes.update(gather_secrets(args, changes.get("exchange", old.exchange), old.name))
    if not changes:
        raise ConfigError(
            "Nothing to update: give e.g. --live/--demo, --api-key-env VAR, --set-secrets, --option KEY=VALUE."
        )
    new = store.update(args.name, **changes)
    print(f"Updated {new}" if new != old else f"No change to {new}")
    if new.is_live and not old.is_live:
        _live_warning(new)
    return 0


def run_remove(args: argparse.Namespace) -> int:
    store = _store(args)
    account = store.get(args.name)
    if not args.yes:
        if not sys.stdin or not sys.stdin.isatty():
            raise ConfigError(f"Removing {account.name!r} needs confirmation: add --yes.")
        answer = input(f"Remove {account}? Type its name to confirm: ").strip()
        if answer != account.name:
            print("Not removed.")
            return 1
    store.remove(account.name)
    print(f"Removed {account.name} ({account.exchange}, {account.mode.upper()}) from {store.path}")
    return 0
