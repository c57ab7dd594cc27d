"""The key that encrypts account secrets and seals the account file.

Looked up, for a new store, in this order: the OS keyring (when a real
backend works), the ``WORKBENCH_ACCOUNTS_KEY`` environment variable, a key
file created 0600 next to the store. An existing store records a key id, so
any source holding the matching key opens it (e.g. a key moved from the
keyring into the environment of a server), and a wrong key is told apart
from a tampered file.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from ..errors import SecretsError

log = logging.getLogger(__name__)

KEY_ENV = "WORKBENCH_ACCOUNTS_KEY"
KEYRING_SERVICE = "workbench-accounts"
GENERATE_HINT = "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
_UNUSABLE_BACKENDS = ("keyring.backends.fail", "keyring.backends.null")


@dataclass(frozen=True, repr=False)
class StoreKey:
    """A Fernet key and where it came from; its repr shows only the key id."""

    key: bytes
    source: str  # 'explicit', 'keyring', 'env' or 'file'
    where: str
    _raw: bytes = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_raw", base64.urlsafe_b64decode(self.key))

    def _derive(self, label: bytes) -> bytes:
        return hmac.new(self._raw, b"workbench-accounts/" + label, hashlib.sha256).digest()

    @property
    def key_id(self) -> str:
        """A short public fingerprint: tells a wrong key from a tampered file."""
        return self._derive(b"key-id")[:8].hex()

    def fernet(self) -> Fernet:
        return Fernet(self.key)

    def seal(self, data: bytes) -> str:
        """HMAC-SHA256 of `data` under a key derived from this one."""
        return hmac.new(self._derive(b"seal"), data, hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return f"StoreKey(source={self.source!r}, where={self.where!r}, key_id={self.key_id!r})"


def parse_key(raw: str | bytes, where: str) -> bytes:
    """Check that `raw` is a Fernet key (44 url-safe base64 characters); never echo it."""
    data = raw.strip().encode() if isinstance(raw, str) else bytes(raw).strip()
    try:
        ok = len(base64.urlsafe_b64decode(data)) == 32 and len(data) == 44
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise SecretsError(f"{where} does not hold a valid key (44 url-safe base64 characters). Generate one with: {GENERATE_HINT}")
    return data


def system_keyring() -> Any | None:
    """The `keyring` package's backend when a real one works here, else None."""
    try:
        import keyring

        backend = keyring.get_keyring()
    except Exception as exc:  # no package, broken configuration, D-Bus missing ...
        log.debug("OS keyring unavailable: %s", type(exc).__name__)
        return None
    if type(backend).__module__.startswith(_UNUSABLE_BACKENDS):
        return None
    try:
        backend.get_password(KEYRING_SERVICE, "probe")
    except Exception as exc:
        log.debug("OS keyring unusable: %s", type(exc).__name__)
        return None
    return backend


class KeyFinder:
    """Finds or creates the key of one store file.

    `keyring`: None uses the OS keyring when one works, False never uses it,
    anything else is a backend with ``get_password``/``set_password``.
    """

    def __init__(
        self,
        store_path: Path,
        *,
        explicit: str | bytes | None = None,
        environ: Mapping[str, str] | None = None,
        keyring: Any = None,
    ) -> None:
        self.store_path = Path(store_path)
        self.explicit = parse_key(explicit, "The key passed in code") if explicit is not None else None
        self.environ = os.environ if environ is None else environ
        self._keyring_arg = keyring
        self._keyring: Any = None
        self._keyring_checked = False
        self.key_file = self.store_path.with_suffix(".key")
        self.keyring_user = str(self.store_path.absolute())

    @property
    def keyring(self) -> Any | None:
        if not self._keyring_checked:
            self._keyring_checked = True
            arg = self._keyring_arg
            self._keyring = None if arg is False else (system_keyring() if arg is None else arg)
        return self._keyring

    # -- the sources ---------------------------------------------------------
    def _from_keyring(self, notes: list[str]) -> StoreKey | None:
        where = f"the OS keyring (service {KEYRING_SERVICE!r})"
        if self.keyring is None:
            notes.append("OS keyring: no working backend")
            return None
        try:
            raw = self.keyring.get_password(KEYRING_SERVICE, self.keyring_user)
        except Exception as exc:
            notes.append(f"OS keyring: {type(exc).__name__}")
            return None
        if not raw:
            notes.append("OS keyring: no key for this file")
            return None
        return StoreKey(parse_key(raw, where), "keyring", where)

    def _from_env(self, notes: list[str]) -> StoreKey | None:
        raw = self.environ.get(KEY_ENV)
        if not raw:
            notes.append(f"${KEY_ENV}: not set")
            return None
        return StoreKey(parse_key(raw, f"${KEY_ENV}"), "env", f"${KEY_ENV}")

    def _from_file(self, notes: list[str]) -> StoreKey | None:
        path = self.key_file
        if not path.exists():
            notes.append(f"{path}: no such file")
            return None
        if os.name == "posix" and stat.S_IMODE(path.stat().st_mode) & 0o077:
            raise SecretsError(f"The key file {path} can be read by other users; restrict it with: chmod 600 {path}")
        return StoreKey(parse_key(path.read_bytes(), f"The key file {path}"), "file", str(path))

    def _sources(self, prefer: str | None) -> list[str]:
        order = ["keyring", "env", "file"]
        if prefer in order:
            order.remove(prefer)
            order.insert(0, prefer)
        return order

    def candidates(self, prefer: str | None, notes: list[str]) -> Iterator[StoreKey]:
        """Keys from every available source, `prefer` (the recorded one) first."""
        if self.explicit is not None:
            yield StoreKey(self.explicit, "explicit", "the key passed in code")
            return
        readers = {"keyring": self._from_keyring, "env": self._from_env, "file": self._from_file}
        for source in self._sources(prefer):
            found = readers[source](notes)
            if found is not None:
                yield found

    def find(self, key_id: str, prefer: str | None) -> StoreKey:
        """The key whose id is `key_id`, or SecretsError saying where we looked."""
        notes: list[str] = []
        for candidate in self.candidates(prefer, notes):
            if hmac.compare_digest(candidate.key_id, str(key_id)):
                return candidate
            notes.append(f"{candidate.where}: a different key")
        raise SecretsError(
            f"No key that opens {self.store_path} was found (it was written with a key from "
            f"{_source_name(prefer)}, key id {key_id}). Looked at: {'; '.join(notes)}. "
            f"Restore that key (e.g. export {KEY_ENV}=<key>, or put the key file back at {self.key_file}); "
            "if it is lost, move the file away and add the accounts again. The file was left unchanged."
        )

    def create(self) -> StoreKey:
        """A key for a new store: explicit, else keyring, else environment, else key file."""
        notes: list[str] = []
        if self.explicit is not None:
            return StoreKey(self.explicit, "explicit", "the key passed in code")
        if self.keyring is not None:
            found = self._from_keyring(notes)
            if found is not None:
                return found
            key = Fernet.generate_key()
            try:
                self.keyring.set_password(KEYRING_SERVICE, self.keyring_user, key.decode())
                stored = self.keyring.get_password(KEYRING_SERVICE, self.keyring_user)
            except Exception as exc:
                stored = None
                log.warning("Could not store the accounts key in the OS keyring (%s); using the next source.", type(exc).__name__)
            if stored == key.decode():
                return StoreKey(key, "keyring", f"the OS keyring (service {KEYRING_SERVICE!r})")
        found = self._from_env(notes) or self._from_file(notes)
        if found is not None:
            return found
        return self._create_key_file()

    def _create_key_file(self) -> StoreKey:
        path = self.key_file
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = Fernet.generate_key()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            found = self._from_file([])
            if found is None:
                raise SecretsError(f"The key file {path} vanished while it was being created; run the command again.") from None
            return found
        with os.fdopen(fd, "wb") as fh:
            fh.write(key + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(path, 0o600)
        log.info("Created the accounts key file %s (mode 0600); back it up: without it the stored secrets are lost.", path)
        return StoreKey(key, "file", str(path))


def _source_name(source: str | None) -> str:
    return {
        "keyring": "the OS keyring",
        "env": f"${KEY_ENV}",
        "file": "the key file",
        "explicit": "a key passed in code",
    }.get(str(source), "an unknown source")
