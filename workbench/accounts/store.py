"""The account store: one JSON file, secrets encrypted with Fernet, the whole file sealed.

Layout (mode 0600, written atomically)::

    {"format": "workbench-accounts", "version": 1, "key_source": "file", "key_id": "…",
     "accounts": {"bybit-demo": {"exchange": "bybit", "mode": "demo", "api_key_env": null, …,
                                 "secrets": "<Fernet token>"}},
     "seal": "<HMAC-SHA256 of everything else>"}

Only stored credentials are encrypted (environment-variable ones are kept as
variable names). The seal makes any edit, e.g. flipping a mode from demo to
live, a :class:`SecretsError` rather than a silent change. Every operation
reads and verifies the file; a failed one never writes.
"""
from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from cryptography.fernet import InvalidToken

from ..errors import ConfigError, SecretsError, did_you_mean, unknown
from .keys import KeyFinder, StoreKey
from .model import CREDENTIALS, Account, env_field

log = logging.getLogger(__name__)

FORMAT = "workbench-accounts"
VERSION = 1
PUBLIC_FIELDS = ("exchange", "mode", *(env_field(c) for c in CREDENTIALS), "options", "created_at", "updated_at")
UPDATABLE = tuple(f.name for f in fields(Account) if f.name not in ("name", "created_at", "updated_at"))

try:  # POSIX advisory lock so two writers (CLI and a panel) do not lose an update
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def _canonical(doc: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in doc.items() if k != "seal"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


class AccountStore:
    """Create, read, update and delete accounts in an encrypted file.

    `key` (a Fernet key) overrides the key lookup; `environ` and `keyring`
    (None: the OS keyring if one works, False: never) are there for tests
    and servers; `clock` stamps created_at/updated_at.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        key: str | bytes | None = None,
        environ: Mapping[str, str] | None = None,
        keyring: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path).expanduser().absolute()
        if self.path.exists() and self.path.is_dir():
            raise ConfigError(f"The account store {self.path} is a folder; give the path of a file such as accounts.json.")
        self.keys = KeyFinder(self.path, explicit=key, environ=environ, keyring=keyring)
        self.clock = clock

    def __repr__(self) -> str:
        return f"AccountStore({str(self.path)!r})"

    # -- reading -------------------------------------------------------------
    def _load(self) -> tuple[StoreKey | None, dict[str, Account]]:
        if not self.path.exists():
            return None, {}
        raw = self.path.read_bytes()
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise self._damaged("it is not valid JSON (truncated or edited)") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise SecretsError(f"{self.path} is not a workbench account file; point the account store elsewhere or move it away.")
        if doc.get("version") != VERSION:
            raise SecretsError(
                f"{self.path} has format version {doc.get('version')!r}; this workbench reads version {VERSION}. "
                "Upgrade workbench to open it."
            )
        if not isinstance(doc.get("key_id"), str) or not isinstance(doc.get("accounts"), dict) or not isinstance(doc.get("seal"), str):
            raise self._damaged("its key id, accounts or seal is missing")
        key = self.keys.find(doc["key_id"], doc.get("key_source"))
        if not hmac.compare_digest(key.seal(_canonical(doc)), doc["seal"]):
            raise self._damaged("its seal does not match its content (it was edited outside workbench)")
        fernet = key.fernet()
        accounts: dict[str, Account] = {}
        for name, record in doc["accounts"].items():
            if not isinstance(record, dict):
                raise self._damaged(f"the record of {name!r} is not an object")
            data = {k: record.get(k) for k in PUBLIC_FIELDS}
            token = record.get("secrets")
            if token is not None:
                try:
                    secrets = json.loads(fernet.decrypt(str(token).encode()))
                except (InvalidToken, ValueError):
                    raise self._damaged(f"the secrets of {name!r} cannot be decrypted") from None
                data.update({c: secrets.get(c) for c in CREDENTIALS})
            try:
                accounts[name] = Account(name=name, **data)
            except ConfigError as exc:
                raise self._damaged(f"the record of {name!r} is invalid ({exc})") from None
        return key, accounts

    def _damaged(self, why: str) -> SecretsError:
        return SecretsError(
            f"The account file {self.path} cannot be trusted: {why}. Nothing was changed. "
            "Restore it from a backup, or move it away and add the accounts again."
        )

    # -- writing -------------------------------------------------------------
    def _dump(self, key: StoreKey, accounts: Mapping[str, Account]) -> bytes:
        fernet = key.fernet()
        records: dict[str, Any] = {}
        for name in sorted(accounts):
            account = accounts[name]
            record: dict[str, Any] = {k: getattr(account, k) for k in PUBLIC_FIELDS}
            record["options"] = dict(account.options)
            if account.has_stored_secrets:
                secrets = {c: getattr(account, c) for c in CREDENTIALS if getattr(account, c) is not None}
                record["secrets"] = fernet.encrypt(json.dumps(secrets).encode()).decode()
            records[name] = record
        doc: dict[str, Any] = {"format": FORMAT, "version": VERSION, "key_source": key.source, "key_id": key.key_id, "accounts": records}
        doc["seal"] = key.seal(_canonical(doc))
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()

    def _write(self, data: bytes) -> None:
        folder = self.path.parent
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if os.name == "posix":
            dir_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if fcntl is None:  # pragma: no cover
            yield
            return
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _mutate(self, change: Callable[[dict[str, Account]], Account]) -> Account:
        """Read and verify, apply `change` to the accounts, write back atomically."""
        with self._locked():
            key, accounts = self._load()
            result = change(accounts)
            if key is None:
                key = self.keys.create()
            self._write(self._dump(key, accounts))
        return result

    # -- the public API --------------------------------------------------------
    def list(self) -> list[Account]:
        """All accounts, sorted by name."""
        _, accounts = self._load()
        return [accounts[n] for n in sorted(accounts)]

    def names(self) -> list[str]:
        return sorted(self._load()[1])

    def __contains__(self, name: object) -> bool:
        return name in self._load()[1]

    def __len__(self) -> int:
        return len(self._load()[1])

    def get(self, name: str) -> Account:
        """The account called `name`, or ConfigError with the nearest name."""
        accounts = self._load()[1]
        return self._pick(accounts, name)

    def _pick(self, accounts: Mapping[str, Account], name: str) -> Account:
        if name in accounts:
            return accounts[name]
        if not accounts:
            raise ConfigError(
                f"No account named {name!r}: the store {self.path} is empty. "
                f"Add one with: workbench accounts add {name} --exchange <ccxt id>"
            )
        raise unknown("account", name, accounts)

    def add(self, account: Account | str, /, **fields_: Any) -> Account:
        """Add an account (an Account, or a name plus Account fields); the name must be new.

        Returns the account as stored, with created_at/updated_at set.
        """
        if isinstance(account, str):
            account = Account(name=account, **fields_)
        elif fields_:
            raise ConfigError("add() takes either an Account or a name with fields, not both.")
        if not isinstance(account, Account):
            raise ConfigError(f"add() needs an Account or a name, got {type(account).__name__}.")
        new = account

        def change(accounts: dict[str, Account]) -> Account:
            nonlocal new
            if new.name in accounts:
                raise ConfigError(
                    f"An account named {new.name!r} already exists. Change it with update() "
                    f"(workbench accounts update {new.name}) or remove it first."
                )
            now = self.clock()
            new = replace(new, created_at=new.created_at if new.created_at is not None else now, updated_at=now)
            accounts[new.name] = new
            return new

        added = self._mutate(change)
        log.info("Account added: %s", added)
        return added

    def update(self, name: str, /, **changes: Any) -> Account:
        """Change some fields of an account; returns the new version.

        Setting a credential clears its environment variable and vice versa
        (``update('x', api_key_env='KEY')`` forgets the stored api_key).
        ``options`` replaces the whole options mapping.
        """
        for field_name in changes:
            if field_name not in UPDATABLE:
                hint = " Accounts cannot be renamed: add a new one and remove the old one." if field_name == "name" else ""
                raise ConfigError(
                    f"Cannot update {field_name!r}.{did_you_mean(field_name, UPDATABLE)}{hint} "
                    f"Updatable fields: {', '.join(UPDATABLE)}."
                )
        for cred in CREDENTIALS:
            if changes.get(cred) is not None and env_field(cred) not in changes:
                changes[env_field(cred)] = None
            if changes.get(env_field(cred)) is not None and cred not in changes:
                changes[cred] = None

        def change(accounts: dict[str, Account]) -> Account:
            old = self._pick(accounts, name)
            new = replace(old, **changes)
            if new == old:
                return old
            new = replace(new, updated_at=self.clock())
            accounts[name] = new
            return new

        updated = self._mutate(change)
        log.info("Account updated: %s", updated)
        return updated

    def remove(self, name: str) -> Account:
        """Delete an account; returns what was removed."""

        def change(accounts: dict[str, Account]) -> Account:
            return accounts.pop(self._pick(accounts, name).name)

        removed = self._mutate(change)
        log.info("Account removed: %s", removed)
        return removed

    def key_info(self) -> dict[str, str] | None:
        """Where the key of this file lives (source, where, key_id); None before the first write."""
        key, _ = self._load()
        return None if key is None else {"source": key.source, "where": key.where, "key_id": key.key_id}
