"""workbench.accounts: model, encrypted store, key sources, ccxt config, CLI; secrets never shown."""
from __future__ import annotations

import io
import json
import logging
import os
import stat
import string
import sys
import tempfile
import threading
from pathlib import Path

import ccxt
import pytest
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import workbench.cli as cli
from workbench.accounts import Account, AccountStore, home_dir, mask, to_ccxt_config, valid_exchanges
from workbench.accounts import keys as keys_mod
from workbench.accounts import store as store_mod
from workbench.accounts.keys import KEY_ENV, KeyFinder, system_keyring
from workbench.errors import ConfigError, SecretsError

API_KEY = "AKtest0123456789abcdefXYZ"
SECRET = "s3cr3t-PLAINTEXT-value-0123456789"
PASSWORD = "pass-phrase-plain-42"
PLAINTEXTS = (API_KEY, SECRET, PASSWORD, API_KEY[4:-4], SECRET[4:-4])
KEY = Fernet.generate_key()


def assert_no_plaintext(text: str) -> None:
    for plain in PLAINTEXTS:
        assert plain not in text, f"plaintext secret {plain[:3]}... leaked"


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


class DictKeyring:
    """A working keyring backend (the `keyring` API surface the store uses)."""

    def __init__(self, drop_writes: bool = False) -> None:
        self.data: dict[tuple[str, str], str] = {}
        self.drop_writes = drop_writes

    def get_password(self, service: str, user: str) -> str | None:
        return self.data.get((service, user))

    def set_password(self, service: str, user: str, value: str) -> None:
        if not self.drop_writes:
            self.data[(service, user)] = value


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "accounts.json"


@pytest.fixture
def store(path: Path) -> AccountStore:
    return AccountStore(path, keyring=False, environ={}, clock=Clock())


def full_account(name: str = "bybit-demo", **kw) -> Account:
    return Account(name=name, exchange=kw.pop("exchange", "bybit"), api_key=API_KEY, secret=SECRET, password=PASSWORD, **kw)


# -- CRUD and the file ------------------------------------------------------------
def test_crud_round_trip(store: AccountStore, path: Path) -> None:
    added = store.add(full_account(options={"defaultType": "swap"}))
    assert added.created_at == added.updated_at == 1_700_000_001.0
    store.add("bin", exchange="binanceusdm", mode="live", api_key_env="BK", secret_env="BS")
    assert [a.name for a in store.list()] == ["bin", "bybit-demo"]
    assert "bin" in store and len(store) == 2

    reopened = AccountStore(path, keyring=False, environ={})
    got = reopened.get("bybit-demo")
    assert (got.api_key, got.secret, got.password, got.mode) == (API_KEY, SECRET, PASSWORD, "demo")
    assert dict(got.options) == {"defaultType": "swap"}
    assert got == added

    updated = store.update("bybit-demo", mode="live", options={"defaultType": "spot"})
    assert updated.is_live and updated.created_at == added.created_at and updated.updated_at > added.updated_at
    assert reopened.get("bybit-demo").options["defaultType"] == "spot"
    assert reopened.get("bybit-demo").secret == SECRET  # untouched fields survive

    removed = store.remove("bybit-demo")
    assert removed.name == "bybit-demo"
    assert reopened.names() == ["bin"]
    with pytest.raises(ConfigError, match="Did you mean 'bin'"):
        reopened.get("bim")


def test_update_swaps_stored_and_env_credentials(store: AccountStore, path: Path) -> None:
    store.add(full_account())
    moved = store.update("bybit-demo", api_key_env="BYBIT_KEY", secret_env="BYBIT_SECRET")
    assert (moved.api_key, moved.secret, moved.password) == (None, None, PASSWORD)
    raw = path.read_text()
    assert "BYBIT_KEY" in raw
    back = store.update("bybit-demo", secret="another-secret-value-123")
    assert back.secret_env is None and back.api_key_env == "BYBIT_KEY"
    with pytest.raises(ConfigError, match="cannot be renamed"):
        store.update("bybit-demo", name="other")
    with pytest.raises(ConfigError, match="Did you mean 'mode'"):
        store.update("bybit-demo", mdoe="live")


def test_file_and_key_file_are_0600_and_no_temp_left(store: AccountStore, path: Path) -> None:
    store.add(full_account())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key_file = path.with_suffix(".key")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    store.update("bybit-demo", mode="live")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_ciphertext_on_disk_holds_no_secret(store: AccountStore, path: Path) -> None:
    store.add(full_account())
    raw = path.read_bytes()
    for plain in PLAINTEXTS:
        assert plain.encode() not in raw
    record = json.loads(raw)["accounts"]["bybit-demo"]
    assert "api_key" not in record and "secret" not in record
    assert Fernet(path.with_suffix(".key").read_bytes().strip()).decrypt(record["secrets"].encode())  # really Fernet


def test_failed_write_leaves_file_intact(store: AccountStore, path: Path, monkeypatch) -> None:
    store.add(full_account())
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(store_mod.os, "replace", broken_replace)
    with pytest.raises(OSError):
        store.add("second", exchange="bybit")
    assert path.read_bytes() == before
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_concurrent_writers_lose_no_update(path: Path) -> None:
    AccountStore(path, key=KEY).add("seed", exchange="paper")  # create the file first

    def writer(prefix: str) -> None:
        s = AccountStore(path, key=KEY)
        for i in range(8):
            s.add(f"{prefix}{i}", exchange="paper")

    threads = [threading.Thread(target=writer, args=(p,)) for p in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(AccountStore(path, key=KEY)) == 17


# -- wrong key and tampering ------------------------------------------------------
def _attempt_everything(store: AccountStore) -> list[SecretsError]:
    errors = []
    for op in (store.list, lambda: store.get("bybit-demo"), lambda: store.add("new", exchange="bybit"),
               lambda: store.update("bybit-demo", mode="live"), lambda: store.remove("bybit-demo")):
        with pytest.raises(SecretsError) as info:
            op()
        errors.append(info.value)
    return errors


def test_wrong_key_is_a_clear_error_and_nothing_is_overwritten(path: Path) -> None:
    AccountStore(path, key=KEY).add(full_account())
    before = path.read_bytes()
    errors = _attempt_everything(AccountStore(path, key=Fernet.generate_key()))
    for err in errors:
        assert str(path) in str(err) and "Restore" in str(err) and "unchanged" in str(err)
    assert path.read_bytes() == before


@pytest.mark.parametrize("tamper", ["ciphertext", "mode", "drop_record", "truncate"])
def test_tampered_file_is_a_clear_error_and_unchanged(path: Path, tamper: str) -> None:
    s = AccountStore(path, key=KEY)
    s.add(full_account())
    s.add("other", exchange="paper")
    doc = json.loads(path.read_text())
    if tamper == "ciphertext":
        token = doc["accounts"]["bybit-demo"]["secrets"]
        doc["accounts"]["bybit-demo"]["secrets"] = token[:40] + ("A" if token[40] != "A" else "B") + token[41:]
        path.write_text(json.dumps(doc))
    elif tamper == "mode":
        doc["accounts"]["bybit-demo"]["mode"] = "live"
        path.write_text(json.dumps(doc))
    elif tamper == "drop_record":
        del doc["accounts"]["other"]
        path.write_text(json.dumps(doc))
    else:
        path.write_bytes(path.read_bytes()[:-30])
    before = path.read_bytes()
    for err in _attempt_everything(AccountStore(path, key=KEY)):
        assert str(path) in str(err) and "cannot be trusted" in str(err)
    assert path.read_bytes() == before


def test_not_an_account_file_or_newer_version(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_text('{"hello": 1}')
    with pytest.raises(SecretsError, match="not a workbench account file"):
        AccountStore(path, key=KEY).list()
    path.write_text(json.dumps({"format": "workbench-accounts", "version": 99}))
    with pytest.raises(SecretsError, match="Upgrade workbench"):
        AccountStore(path, key=KEY).list()


# -- key sources --------------------------------------------------------------------
def test_keyring_used_when_it_works(path: Path) -> None:
    ring = DictKeyring()
    s = AccountStore(path, keyring=ring, environ={KEY_ENV: Fernet.generate_key().decode()})
    s.add(full_account())
    assert s.key_info()["source"] == "keyring"
    assert not path.with_suffix(".key").exists()
    assert len(ring.data) == 1
    assert AccountStore(path, keyring=ring, environ={}).get("bybit-demo").secret == SECRET


def test_keyring_unavailable_falls_back_to_env_then_key_file(path: Path, monkeypatch) -> None:
    monkeypatch.setattr(keys_mod, "system_keyring", lambda: None)
    env_key = Fernet.generate_key().decode()
    s = AccountStore(path, environ={KEY_ENV: env_key})
    s.add(full_account())
    assert s.key_info()["source"] == "env"
    assert not path.with_suffix(".key").exists()
    with pytest.raises(SecretsError, match=KEY_ENV):
        AccountStore(path, environ={}).list()

    other = path.with_name("second.json")
    s2 = AccountStore(other, environ={})
    s2.add(full_account())
    assert s2.key_info()["source"] == "file"
    assert stat.S_IMODE(other.with_suffix(".key").stat().st_mode) == 0o600


def test_keyring_that_drops_writes_is_not_trusted(path: Path) -> None:
    s = AccountStore(path, keyring=DictKeyring(drop_writes=True), environ={})
    s.add(full_account())
    assert s.key_info()["source"] == "file"
    assert AccountStore(path, keyring=False, environ={}).get("bybit-demo").secret == SECRET


def test_system_keyring_without_backend_is_none(monkeypatch) -> None:
    import keyring
    from keyring.backends import fail

    monkeypatch.setattr(keyring, "get_keyring", lambda: fail.Keyring())
    assert system_keyring() is None

    class Broken:
        def get_password(self, service, user):
            raise RuntimeError("dbus gone")

    monkeypatch.setattr(keyring, "get_keyring", lambda: Broken())
    assert system_keyring() is None
    monkeypatch.setattr(keyring, "get_keyring", lambda: DictKeyring())
    assert isinstance(system_keyring(), DictKeyring)


def test_key_found_by_id_when_moved_from_file_to_env(path: Path) -> None:
    AccountStore(path, keyring=False, environ={}).add(full_account())
    key_file = path.with_suffix(".key")
    key = key_file.read_text().strip()
    # a different key in the environment does not stop the key file from opening it
    assert AccountStore(path, keyring=False, environ={KEY_ENV: Fernet.generate_key().decode()}).get("bybit-demo")
    key_file.unlink()
    assert AccountStore(path, keyring=False, environ={KEY_ENV: key}).get("bybit-demo").secret == SECRET
    with pytest.raises(SecretsError, match="No key that opens") as info:
        AccountStore(path, keyring=False, environ={}).list()
    assert str(key_file) in str(info.value)


def test_bad_keys_are_rejected_without_echo(path: Path) -> None:
    bad = "not-a-key-" + SECRET
    with pytest.raises(SecretsError, match="Generate one") as info:
        AccountStore(path, keyring=False, environ={KEY_ENV: bad}).add(full_account())
    assert SECRET not in str(info.value)
    assert not path.exists()
    with pytest.raises(SecretsError):
        KeyFinder(path, explicit=bad)


def test_key_file_readable_by_others_is_refused(store: AccountStore, path: Path) -> None:
    store.add(full_account())
    os.chmod(path.with_suffix(".key"), 0o644)
    with pytest.raises(SecretsError, match="chmod 600"):
        store.list()


# -- environment-only credentials -----------------------------------------------------
def test_env_only_account_never_writes_the_secret(store: AccountStore, path: Path) -> None:
    env = {"BYBIT_KEY": API_KEY, "BYBIT_SECRET": SECRET}
    store.add("envy", exchange="bybit", api_key_env="BYBIT_KEY", secret_env="BYBIT_SECRET")
    raw = path.read_bytes()
    assert "secrets" not in json.loads(raw)["accounts"]["envy"]
    for plain in PLAINTEXTS:
        assert plain.encode() not in raw
    account = store.get("envy")
    config = to_ccxt_config(account, environ=env)
    assert (config["apiKey"], config["secret"]) == (API_KEY, SECRET)
    with pytest.raises(SecretsError, match="BYBIT_SECRET") as info:
        to_ccxt_config(account, environ={"BYBIT_KEY": API_KEY})
    assert_no_plaintext(str(info.value))


def test_stored_and_env_credential_together_is_refused() -> None:
    with pytest.raises(ConfigError, match="not both"):
        Account(name="a", exchange="bybit", secret=SECRET, secret_env="X")
    with pytest.raises(ConfigError, match="environment variable name"):
        Account(name="a", exchange="bybit", secret_env="NOT A NAME")


# -- masking -------------------------------------------------------------------------
def test_repr_str_describe_mask_keys() -> None:
    account = full_account()
    for text in (repr(account), str(account), json.dumps(account.describe()), f"{account}", repr([account])):
        assert_no_plaintext(text)
    assert f"{API_KEY[:4]}…{API_KEY[-4:]}" in repr(account)
    assert "'****'" in repr(account)  # secrets are never partly shown
    env_only = Account(name="e", exchange="bybit", api_key_env="K", secret_env="S")
    assert "$K" in str(env_only) and "$S" in repr(env_only)


@given(st.text(min_size=1, max_size=60))
def test_mask_shows_at_most_four_characters_each_side(value: str) -> None:
    shown = mask(value)
    if len(value) >= 16:
        assert shown == value[:4] + "…" + value[-4:]
        assert value not in shown
    else:
        assert shown == "****"
    assert mask(value, partly=False) == "****"


def test_errors_and_logs_never_hold_secrets(store: AccountStore, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    messages = []
    for bad in ({"api_key": SECRET + " "}, {"secret": SECRET + "\n"}, {"secret": 12345}):
        with pytest.raises(ConfigError) as info:
            Account(name="a", exchange="bybit", **bad)
        messages.append(str(info.value))
    with pytest.raises(ConfigError) as info:
        Account(name="a", exchange="bybit", options={"headers": {"apiKey": API_KEY}})
    messages.append(str(info.value))
    store.add(full_account())
    store.update("bybit-demo", mode="live")
    store.get("bybit-demo")
    store.remove("bybit-demo")
    assert "Account added" in caplog.text and "Account removed" in caplog.text
    assert_no_plaintext(caplog.text + "\n".join(messages))


# -- modes and ccxt -----------------------------------------------------------------------
def test_demo_is_the_default_and_live_only_when_asked(store: AccountStore) -> None:
    account = Account(name="a", exchange="bybit")
    assert account.mode == "demo" and not account.is_live
    assert to_ccxt_config(account)["sandbox"] is True
    live = store.add("l", exchange="bybit", mode="live")
    assert live.is_live and to_ccxt_config(live)["sandbox"] is False
    with pytest.raises(ConfigError, match="'demo'.*'live'"):
        Account(name="a", exchange="bybit", mode="paper")


@pytest.mark.parametrize("exchange_id", ["bybit", "binance", "binanceusdm", "bitfinex"])
def test_ccxt_config_builds_a_sandboxed_exchange(exchange_id: str) -> None:
    urls = {"api": {"public": "http://127.0.0.1:9/public", "private": "http://127.0.0.1:9/private"}}
    account = Account(name="a", exchange=exchange_id, api_key=API_KEY, secret=SECRET,
                      options={"defaultType": "swap", "timeout": 5000, "urls": urls})
    config = to_ccxt_config(account)
    assert config["timeout"] == 5000 and config["options"] == {"defaultType": "swap"}
    assert config["urls"]["test"] == urls["api"]  # sandbox mode stays on the override
    exchange = getattr(ccxt, exchange_id)(config)
    assert exchange.isSandboxModeEnabled and exchange.apiKey == API_KEY and exchange.enableRateLimit
    assert {k: exchange.urls["api"][k] for k in urls["api"]} == urls["api"]  # ccxt deep-merges urls
    live = getattr(ccxt, exchange_id)(to_ccxt_config(Account(name="b", exchange=exchange_id, mode="live")))
    assert not live.isSandboxModeEnabled


def test_account_copies_and_pickles() -> None:
    import copy
    import pickle

    account = full_account(options={"urls": {"api": {"public": "http://127.0.0.1:9"}}})
    for clone in (copy.copy(account), copy.deepcopy(account), pickle.loads(pickle.dumps(account))):
        assert clone == account and clone.secret == SECRET and clone.options["urls"] == account.options["urls"]


def test_options_cannot_carry_credentials_or_override_mode() -> None:
    with pytest.raises(ConfigError, match="stored unencrypted"):
        Account(name="a", exchange="okx", options={"options": {"password": "x"}})
    with pytest.raises(ConfigError, match="mode decides"):
        Account(name="a", exchange="bybit", options={"sandbox": False})
    with pytest.raises(ConfigError, match="JSON"):
        Account(name="a", exchange="bybit", options={"f": object()})
    with pytest.raises(ConfigError, match="Interactive Brokers"):
        to_ccxt_config(Account(name="i", exchange="ib"))
    frozen = Account(name="a", exchange="bybit", options={"x": 1})
    with pytest.raises(TypeError):
        frozen.options["x"] = 2  # type: ignore[index]


def test_validation_messages_say_how_to_fix(store: AccountStore, path: Path) -> None:
    with pytest.raises(ConfigError, match="Did you mean 'bybit'"):
        Account(name="a", exchange="bybitt")
    with pytest.raises(ConfigError, match="letters, digits"):
        Account(name="bad name", exchange="bybit")
    store.add(full_account())
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        store.add(full_account())
    with pytest.raises(ConfigError, match="mode must be"):
        store.update("bybit-demo", mode="real")
    assert path.read_bytes() == before


# -- random records (hypothesis) ---------------------------------------------------------
NAME_CHARS = set(string.ascii_letters + string.digits + "_.-")


def _valid(name: str, exchange: str, mode: str) -> str | None:
    """Which field is invalid (checked in this order), by an independent rule."""
    if not (1 <= len(name) <= 64 and set(name) <= NAME_CHARS and name[0] not in "_.-"):
        return "name"
    if exchange not in set(ccxt.exchanges) | {"paper", "ib"}:
        return "exchange"
    if mode not in ("demo", "live"):
        return "mode"
    return None


names = st.one_of(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,70}", fullmatch=True), st.text(max_size=12))
exchanges = st.one_of(st.sampled_from(sorted(valid_exchanges())), st.text(max_size=10))
modes = st.one_of(st.sampled_from(["demo", "live"]), st.text(max_size=6))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(names, exchanges, modes), min_size=1, max_size=5))
def test_random_records_valid_stored_invalid_rejected_store_unchanged(records) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "accounts.json"
        s = AccountStore(path, key=KEY)
        expected: dict[str, tuple[str, str]] = {}
        for name, exchange, mode in records:
            before = path.read_bytes() if path.exists() else None
            bad = _valid(name, exchange, mode)
            if bad is None and name not in expected:
                s.add(name, exchange=exchange, mode=mode, api_key=API_KEY, secret=SECRET)
                expected[name] = (exchange, mode)
                continue
            with pytest.raises(ConfigError) as info:
                s.add(name, exchange=exchange, mode=mode, api_key=API_KEY, secret=SECRET)
            assert (bad or "already exists") in str(info.value)
            assert (path.read_bytes() if path.exists() else None) == before
        got = {a.name: (a.exchange, a.mode) for a in AccountStore(path, key=KEY).list()}
        assert got == expected


# -- home folder ---------------------------------------------------------------------------
def test_home_dir_explicit_then_env_then_default(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert home_dir(environ={}) == tmp_path / ".workbench"
    assert home_dir(environ={"WORKBENCH_HOME": str(tmp_path / "env")}) == tmp_path / "env"
    assert home_dir("explicit", environ={"WORKBENCH_HOME": "/x"}) == tmp_path / "explicit"


# -- CLI --------------------------------------------------------------------------------------
@pytest.fixture
def wb(monkeypatch, tmp_path: Path, capsys):
    """Run `workbench ...` through the real entry point; returns (code, stdout, stderr)."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("workbench.cli.accounts",))
    monkeypatch.setattr(keys_mod, "system_keyring", lambda: None)
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv("WORKBENCH_HOME", raising=False)
    home = tmp_path / "wbhome"
    outputs: list[str] = []

    def run(*argv: str, stdin: str | None = None, tty: bool = False):
        fake = io.StringIO(stdin or "")
        fake.isatty = lambda: tty  # type: ignore[method-assign]
        monkeypatch.setattr(sys, "stdin", fake)
        code = cli.main(["--home", str(home), *argv])
        out, err = capsys.readouterr()
        outputs.append(out + err)
        return code, out, err

    run.home = home  # type: ignore[attr-defined]
    run.outputs = outputs  # type: ignore[attr-defined]
    return run


def test_cli_full_cycle_masks_every_output(wb, monkeypatch, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    code, out, _ = wb("accounts", "add", "bybit-demo", "--exchange", "bybit", "--default-type", "swap",
                      "--secrets-stdin", stdin=f"api_key={API_KEY}\nsecret={SECRET}\n")
    assert code == 0 and "DEMO" in out
    code, _, err = wb("accounts", "add", "okx-live", "--exchange", "okx", "--live", "--secrets-stdin",
                      stdin=json.dumps({"apiKey": API_KEY, "secret": SECRET, "passphrase": PASSWORD}))
    assert code == 0 and "LIVE account" in err
    code, out, _ = wb("accounts", "add", "envy", "--exchange", "binanceusdm", "--api-key-env", "BK", "--secret-env", "BS")
    assert code == 0
    code, out, _ = wb("accounts", "list")
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["NAME", "EXCHANGE", "MODE"]
    assert any(line.startswith("okx-live") and "LIVE" in line for line in lines)
    assert any(line.startswith("envy") and "$BK" in line for line in lines)
    code, out, _ = wb("accounts", "list", "--json")
    assert {a["name"]: a["mode"] for a in json.loads(out)} == {"bybit-demo": "demo", "envy": "demo", "okx-live": "live"}
    code, out, _ = wb("accounts", "show", "okx-live")
    assert code == 0 and "real money" in out and f"{API_KEY[:4]}…{API_KEY[-4:]}" in out
    code, out, _ = wb("accounts", "update", "bybit-demo", "--live", "--option", "timeout=5000")
    assert code == 0
    store = AccountStore(wb.home / "accounts.json", keyring=False, environ={})
    assert store.get("bybit-demo").is_live and store.get("bybit-demo").options["timeout"] == 5000
    assert store.get("okx-live").password == PASSWORD
    code, _, err = wb("accounts", "remove", "bybit-demo")
    assert code == 2 and "--yes" in err
    code, out, _ = wb("accounts", "remove", "bybit-demo", "--yes")
    assert code == 0 and store.names() == ["envy", "okx-live"]
    code, _, err = wb("accounts", "show", "okx-lve")
    assert code == 2 and "Did you mean" in err
    assert_no_plaintext("\n".join(wb.outputs) + caplog.text)


def test_cli_prompts_without_echo_and_refuses_without_terminal(wb, monkeypatch) -> None:
    answers = iter([API_KEY, SECRET])
    prompts: list[str] = []
    monkeypatch.setattr("getpass.getpass", lambda prompt: (prompts.append(prompt), next(answers))[1])
    code, out, _ = wb("accounts", "add", "p", "--exchange", "bybit", tty=True)
    assert code == 0 and len(prompts) == 2 and "hidden" in prompts[0]
    assert AccountStore(wb.home / "accounts.json", keyring=False, environ={}).get("p").secret == SECRET
    code, _, err = wb("accounts", "add", "q", "--exchange", "bybit", tty=False)
    assert code == 2 and "--secrets-stdin" in err
    code, _, err = wb("accounts", "add", "r", "--exchange", "bybit", "--secrets-stdin", stdin=f"apikey2={SECRET}")
    assert code == 2 and "unknown name" in err
    assert_no_plaintext("\n".join(wb.outputs))


def test_cli_demo_default_home_env_and_secret_free_argv(wb, monkeypatch, tmp_path: Path) -> None:
    code, out, _ = wb("accounts", "add", "pap", "--exchange", "paper")
    assert code == 0 and "DEMO" in out and (wb.home / "accounts.json").exists()
    with pytest.raises(SystemExit):  # there is no flag that takes a secret on the command line
        wb("accounts", "add", "x", "--exchange", "bybit", "--secret", SECRET)
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "from-env"))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert cli.main(["accounts", "add", "e", "--exchange", "paper"]) == 0
    assert (tmp_path / "from-env" / "accounts.json").exists()


def test_cli_update_secrets_and_nothing_to_update(wb) -> None:
    wb("accounts", "add", "envy", "--exchange", "bybit", "--api-key-env", "BK", "--secret-env", "BS")
    code, _, err = wb("accounts", "update", "envy")
    assert code == 2 and "Nothing to update" in err
    code, out, _ = wb("accounts", "update", "envy", "--set-secrets", "--secrets-stdin", stdin=f"secret={SECRET}")
    assert code == 0
    account = AccountStore(wb.home / "accounts.json", keyring=False, environ={}).get("envy")
    assert (account.secret, account.secret_env, account.api_key_env) == (SECRET, None, "BK")
    code, _, err = wb("accounts", "update", "envy", "--unset-option", "nope")
    assert code == 2 and "no such option" in err
    assert_no_plaintext("\n".join(wb.outputs))


def test_cli_remove_confirmation_by_typing_the_name(wb, monkeypatch) -> None:
    wb("accounts", "add", "pap", "--exchange", "paper")
    monkeypatch.setattr("builtins.input", lambda prompt: "nope")
    code, out, _ = wb("accounts", "remove", "pap", tty=True)
    assert code == 1 and "Not removed" in out
    monkeypatch.setattr("builtins.input", lambda prompt: "pap")
    code, out, _ = wb("accounts", "remove", "pap", tty=True)
    assert code == 0 and "Removed pap" in out
