"""Accounts panel: list, add, edit and remove exchange accounts; demo vs live marked; secrets never displayed.

Credentials are typed into password fields, handed to
:class:`~workbench.accounts.AccountStore` (which encrypts them) and cleared
from the widgets at once; the table shows only masked values.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import ipywidgets as w

from ..accounts import AccountStore
from ..errors import ConfigError, WorkbenchError
from .widgets import Message, Panel, button, esc, header, mode_badge, set_options, show, styled, table, when

COLUMNS = ["name", "exchange", "mode", "api_key", "secret", "password", "updated"]
SECRET_FIELDS = ("api_key", "secret", "password")


class AccountsPanel(Panel):
    def __init__(self, accounts: AccountStore | str | Path) -> None:
        self.accounts = accounts if isinstance(accounts, AccountStore) else AccountStore(accounts)
        self.message = Message("wb-acct-message")
        self.table = styled(w.HTML(""), "wb-acct-table")
        self.select = styled(w.Dropdown(options=[], description="account"), "wb-acct-select")
        self.name = styled(w.Text(description="name", placeholder="bybit-demo"), "wb-acct-name")
        self.exchange = styled(w.Text(description="exchange", placeholder="bybit"), "wb-acct-exchange")
        self.mode = styled(w.ToggleButtons(options=["demo", "live"], value="demo", description="mode"), "wb-acct-mode")
        self.live_ack = styled(w.Checkbox(value=False, description="I understand: LIVE means real money", indent=False), "wb-acct-live-ack")
        self.api_key = styled(w.Password(description="api key", placeholder="stored encrypted; never shown"), "wb-acct-api-key")
        self.secret = styled(w.Password(description="secret"), "wb-acct-secret")
        self.password = styled(w.Password(description="passphrase"), "wb-acct-passphrase")
        self.api_key_env = styled(w.Text(description="api key env", placeholder="or an env var, e.g. BYBIT_KEY"), "wb-acct-api-key-env")
        self.secret_env = styled(w.Text(description="secret env", placeholder="e.g. BYBIT_SECRET"), "wb-acct-secret-env")
        self.add = button("Add", "wb-acct-add", "success")
        self.update = button("Save changes", "wb-acct-update", "primary")
        self.remove = button("Remove", "wb-acct-remove", "danger")
        self.remove_yes = button("Yes, remove", "wb-acct-remove-confirm", "danger")
        self.remove_no = button("Cancel", "wb-acct-remove-cancel")
        self.remove_box = w.HBox([self.remove_yes, self.remove_no])
        show(self.remove_box, False)
        self.select.observe(lambda _c: self.fill(), names="value")
        self.mode.observe(lambda c: show(self.live_ack, c["new"] == "live"), names="value")
        show(self.live_ack, False)
        self.add.on_click(lambda _b: self.do_add())
        self.update.on_click(lambda _b: self.do_update())
        self.remove.on_click(lambda _b: show(self.remove_box, bool(self.select.value)))
        self.remove_yes.on_click(lambda _b: self.do_remove())
        self.remove_no.on_click(lambda _b: show(self.remove_box, False))
        self.widget = styled(w.VBox([
            header("Accounts", str(self.accounts.path)), self.table, w.HBox([self.select, self.remove, self.remove_box]),
            w.HBox([self.name, self.exchange]), w.HBox([self.mode, self.live_ack]), w.HBox([self.api_key, self.api_key_env]),
            w.HBox([self.secret, self.secret_env]), self.password, w.HBox([self.add, self.update]), self.message.widget,
        ]), "wb-acct-panel")
        self.refresh()

    def refresh(self) -> None:
        try:
            accounts = self.accounts.list()
        except WorkbenchError as exc:
            self.message.show(str(exc), "error")
            return
        rows = []
        for a in accounts:
            d = a.describe()  # masked values only
            rows.append({"name": esc(a.name), "exchange": esc(a.exchange), "mode": mode_badge(a.mode),
                         **{f: esc(d[f] or "—") for f in SECRET_FIELDS}, "updated": esc(when(a.updated_at))})
        self.table.value = table(rows, COLUMNS, "wb-acct-list", raw=COLUMNS, empty="no accounts yet: add one below")
        set_options(self.select, [(f"{a.name} ({a.mode.upper()})", a.name) for a in accounts])

    def fill(self) -> None:
        """Put the selected account's non-secret fields into the form (secret fields stay empty)."""
        name = self.select.value
        if not name:
            return
        a = self.accounts.get(name)
        self.name.value, self.exchange.value, self.mode.value = a.name, a.exchange, a.mode
        self.api_key_env.value, self.secret_env.value = a.api_key_env or "", a.secret_env or ""
        self._clear_secrets()

    def _clear_secrets(self) -> None:
        for wid in (self.api_key, self.secret, self.password):
            wid.value = ""

    def _fields(self, updating: bool) -> dict[str, Any]:
        if self.mode.value == "live" and not self.live_ack.value:
            raise ConfigError("Tick 'I understand: LIVE means real money' to mark an account live.")
        out: dict[str, Any] = {"exchange": self.exchange.value.strip(), "mode": self.mode.value}
        for cred, wid in (("api_key", self.api_key), ("secret", self.secret), ("password", self.password)):
            if wid.value:
                out[cred] = wid.value.strip()
        for cred, wid in (("api_key", self.api_key_env), ("secret", self.secret_env)):
            if wid.value.strip():
                out[f"{cred}_env"] = wid.value.strip()
        return out

    def do_add(self) -> Any:
        try:
            acct = self.accounts.add(self.name.value.strip(), **self._fields(updating=False))
        except WorkbenchError as exc:
            self.message.show(str(exc), "error")
            return None
        finally:
            self._clear_secrets()
        self.message.show(f"added {acct}", "ok")  # str(acct) masks its keys
        self.refresh()
        self.select.value = acct.name
        return acct

    def do_update(self) -> Any:
        name = self.select.value
        if not name:
            self.message.show("Choose an account to change.", "error")
            return None
        try:
            acct = self.accounts.update(name, **self._fields(updating=True))
        except WorkbenchError as exc:
            self.message.show(str(exc), "error")
            return None
        finally:
            self._clear_secrets()
        self.message.show(f"saved {acct}", "ok")
        self.refresh()
        return acct

    def do_remove(self) -> Any:
        show(self.remove_box, False)
        name = self.select.value
        try:
            acct = self.accounts.remove(name)
        except WorkbenchError as exc:
            self.message.show(str(exc), "error")
            return None
        self.message.show(f"removed {acct.name}", "ok")
        self.refresh()
        return acct


def accounts_panel(accounts: AccountStore | str | Path | None = None) -> AccountsPanel:
    """Manage the accounts in `accounts` (an AccountStore or its file; default <home>/accounts.json)."""
    if accounts is None:
        from ..accounts import accounts_path

        accounts = accounts_path()
    return AccountsPanel(accounts)
