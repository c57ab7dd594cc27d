"""Deploy panel: configure a deployment, review it with a risk disclosure, confirm (typed confirmation for live).

The panel builds a :class:`~workbench.engine.DeploymentSpec` (which validates
everything) and hands it to ``Engine.deploy`` in this kernel, or queues a
``deploy`` command for an engine running elsewhere.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import ipywidgets as w

from ..errors import ConfigError, WorkbenchError
from ..params import ParamStore
from ..risk import RiskLimits
from ..strategies import BUILTINS, get_strategy
from .control import ACTOR
from .widgets import Message, Panel, button, esc, freshness_badge, header, show, split, styled, when

TIMEFRAMES = ("1m", "5m", "15m", "1h", "4h", "1d")
SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
LIVE_WORD = "LIVE"
DISCLOSURE = (
    "Trading involves substantial risk of loss. Optimized parameters describe the past and do not guarantee future "
    "results; paper fills are simulated and real fills, fees and slippage can be worse. Every order passes the risk "
    "limits below, which bound but do not remove losses. You can pause, stop or emergency-stop the deployment at any time."
)


class DeployPanel(Panel):
    """Mode, venue, account, strategy, symbols, timeframe, parameters, risk limits, SL/TP; review; confirm."""

    def __init__(self, engine_or_store: Any, params_dir: str = "params", accounts: Any = None,
                 strategy: str = "sma_cross", symbols: tuple[str, ...] = ("BTC/USDT",), timeframe: str = "1h",
                 warm_up: bool = True) -> None:
        self.engine, self.store = split(engine_or_store)
        self.params_store = ParamStore(params_dir)
        self.params_dir = str(params_dir)
        self.accounts = accounts
        self.do_warm_up = warm_up
        self.loaded: Any = None  # the ParamSet shown, if any
        self.pending: Any = None  # the spec under review
        self.last_deployment: str | None = None
        self.last_command: int | None = None
        self.message = Message("wb-deploy-message")

        self.mode = styled(w.ToggleButtons(options=["paper", "live"], value="paper", description="mode"), "wb-deploy-mode")
        self.venue = styled(w.Dropdown(options=["paper", "ccxt", "ib"], value="paper", description="venue"), "wb-deploy-venue")
        self.account = styled(w.Dropdown(options=self._account_options(), value=None, description="account"), "wb-deploy-account")
        self.strategy = styled(w.Dropdown(options=sorted(BUILTINS), value=strategy, description="strategy"), "wb-deploy-strategy")
        self.symbols = styled(w.Text(value=", ".join(symbols), description="symbols"), "wb-deploy-symbols")
        self.timeframe = styled(w.Dropdown(options=list(dict.fromkeys([*TIMEFRAMES, timeframe])), value=timeframe, description="timeframe"),
                                "wb-deploy-timeframe")
        self.direction = styled(w.Dropdown(options=["long", "short", "both"], value="long", description="direction"), "wb-deploy-direction")
        self.cash = styled(w.FloatText(value=10_000.0, description="paper cash"), "wb-deploy-cash")
        self.freshness = styled(w.HTML(""), "wb-deploy-freshness")
        self.param_box = styled(w.VBox([]), "wb-deploy-params")
        self.param_inputs: dict[str, w.FloatText] = {}
        self.reload = button("Load newest optimized", "wb-deploy-load-params", icon="refresh")
        self.risk_inputs: dict[str, w.Widget] = self._risk_widgets()
        self.use_sl = styled(w.Checkbox(value=True, description="stop loss"), "wb-deploy-sl")
        self.use_tp = styled(w.Checkbox(value=True, description="take profit"), "wb-deploy-tp")
        self.review = button("Review deployment", "wb-deploy-review", "primary")

        self.summary = styled(w.HTML(""), "wb-deploy-summary")
        self.disclosure = styled(w.HTML(f'<div style="font-size:12px;color:#444">{esc(DISCLOSURE)}</div>'), "wb-deploy-disclosure")
        self.live_warning = styled(w.HTML(""), "wb-deploy-live-warning")
        self.live_confirm = styled(w.Text(placeholder="type the account name or LIVE", description="confirm"), "wb-deploy-live-confirm-text")
        self.confirm = button("Confirm and deploy", "wb-deploy-confirm", "success")
        self.cancel = button("Cancel", "wb-deploy-cancel")
        self.confirm_box = styled(w.VBox([self.summary, self.disclosure, self.live_warning, self.live_confirm,
                                          w.HBox([self.confirm, self.cancel])]), "wb-deploy-confirm-box")
        show(self.confirm_box, False)

        for wid in (self.strategy, self.symbols, self.timeframe):
            wid.observe(lambda _c: self.load_params(), names="value")
        self.mode.observe(self._mode_changed, names="value")
        self.reload.on_click(lambda _b: self.load_params())
        self.review.on_click(lambda _b: self.open_review())
        self.confirm.on_click(lambda _b: self.do_deploy())
        self.cancel.on_click(lambda _b: self.close_review("cancelled"))
        for wid in self._inputs():
            wid.observe(lambda _c: self._invalidate(), names="value")

        risk_grid = w.GridBox(list(self.risk_inputs.values()), layout=w.Layout(grid_template_columns="repeat(2, 48%)"))
        target = "engine in this kernel" if self.engine is not None else "queued to the store for a running engine"
        self.widget = styled(w.VBox([
            header("Deploy", target),
            w.HBox([self.mode, self.venue, self.account]),
            w.HBox([self.strategy, self.symbols]), w.HBox([self.timeframe, self.direction, self.cash]),
            w.HTML("<b>Parameters</b>"), w.HBox([self.freshness, self.reload]), self.param_box,
            w.HTML("<b>Risk limits</b>"), w.HBox([self.use_sl, self.use_tp]), risk_grid,
            self.review, self.message.widget, self.confirm_box,
        ]), "wb-deploy-panel")
        self.load_params()

    # -- inputs ---------------------------------------------------------------------
    def _account_options(self) -> list[tuple[str, str | None]]:
        opts: list[tuple[str, str | None]] = [("(none)", None)]
        if self.accounts is not None:
            try:
                opts += [(f"{a.name} ({a.exchange}, {a.mode.upper()})", a.name) for a in self.accounts.list()]
            except WorkbenchError as exc:
                self.message.show(str(exc), "error")
        return opts

    def _risk_widgets(self) -> dict[str, w.Widget]:
        defaults = RiskLimits()
        out: dict[str, w.Widget] = {}
        for f in dataclasses.fields(RiskLimits):
            value = getattr(defaults, f.name)
            style = {"description_width": "150px"}
            if f.name == "size_mode":
                wid: w.Widget = w.Dropdown(options=["pct_equity", "fixed_quote"], value=value, description=f.name, style=style)
            elif isinstance(value, bool):
                wid = w.Checkbox(value=value, description=f.name, style=style)
            else:  # text, so 'off' (None) and numbers share one field
                wid = w.Text(value="off" if value is None else f"{value:g}", description=f.name, style=style)
            out[f.name] = styled(wid, f"wb-deploy-risk-{f.name.replace('_', '-')}")
        return out

    def _inputs(self) -> list[w.Widget]:
        return [self.mode, self.venue, self.account, self.strategy, self.symbols, self.timeframe, self.direction, self.cash,
                self.use_sl, self.use_tp, *self.risk_inputs.values()]

    def _mode_changed(self, change: dict[str, Any]) -> None:
        if change["new"] == "live" and self.venue.value == "paper":
            self.venue.value = "ccxt"

    def _invalidate(self) -> None:
        if self.pending is not None:
            self.close_review("inputs changed: review again")

    def symbol_list(self) -> list[str]:
        return [s.strip() for s in self.symbols.value.split(",") if s.strip()]

    def load_params(self) -> None:
        """Fill the parameter fields with the newest optimized set (freshness shown), else the strategy defaults."""
        try:
            strat = get_strategy(self.strategy.value)
        except WorkbenchError as exc:
            self.message.show(str(exc), "error")
            return
        syms = self.symbol_list()
        self.loaded = None
        values = dict(strat.defaults)
        if syms:
            try:
                self.loaded = self.params_store.load_latest(strat.name, syms[0], self.timeframe.value)
                values.update(self.loaded.params)
            except WorkbenchError:
                self.loaded = None
        if self.loaded is not None:
            self.freshness.value = (f"{freshness_badge(self.loaded.freshness)} optimized "
                                    f"{esc(self.loaded.optimized_at.strftime('%Y-%m-%d %H:%M'))} UTC for {esc(syms[0])}")
        else:
            self.freshness.value = (f"{freshness_badge('given')} no optimized parameters for {esc(strat.name)} "
                                    f"{esc(syms[0] if syms else '?')} {esc(self.timeframe.value)} in {esc(self.params_dir)}: "
                                    "strategy defaults")
        self.param_inputs = {}
        for name, value in values.items():
            wid = styled(w.FloatText(value=float(value), description=name), f"wb-deploy-param-{name.replace('_', '-')}")
            wid.observe(lambda _c: self._invalidate(), names="value")
            self.param_inputs[name] = wid
        self.param_box.children = list(self.param_inputs.values())

    def risk(self) -> dict[str, Any]:
        """The risk limits as entered ('off' or empty switches a limit off)."""
        out: dict[str, Any] = {}
        for name, wid in self.risk_inputs.items():
            value = wid.value
            if isinstance(value, str) and name != "size_mode":
                text = value.strip().lower()
                if text in ("", "off", "none"):
                    value = None
                else:
                    try:
                        value = float(text)
                    except ValueError:
                        raise ConfigError(f"Risk limit {name}: {value!r} is not a number; type a number or 'off'.") from None
                    if name == "max_open_positions" and value.is_integer():
                        value = int(value)
            out[name] = value
        if not self.use_sl.value:
            out["stop_loss"] = None
        if not self.use_tp.value:
            out["take_profit"] = None
        return out

    def params(self) -> dict[str, float] | None:
        """None when the fields still hold the stored optimized set (the engine then loads it and records its freshness)."""
        values = {k: v.value for k, v in self.param_inputs.items()}
        if self.loaded is not None and all(float(self.loaded.params.get(k, float("nan"))) == float(v) for k, v in values.items()):
            return None
        return values

    def spec(self) -> Any:
        """The DeploymentSpec the inputs describe (validated; ConfigError says what to fix)."""
        from ..engine import DeploymentSpec

        mode = self.mode.value
        if mode == "live" and not self.account.value:
            raise ConfigError("A live deployment needs a live account: choose one (add it in the accounts panel).")
        if self.venue.value != "paper" and not self.account.value:
            raise ConfigError(f"Venue {self.venue.value!r} needs an account; choose one, or use the paper venue.")
        return DeploymentSpec(
            strategy=self.strategy.value, symbols=tuple(self.symbol_list()), timeframe=self.timeframe.value,
            params=self.params(), venue=self.venue.value, account=self.account.value, mode=mode, risk=self.risk(),
            direction=self.direction.value, initial_cash=float(self.cash.value), params_dir=self.params_dir,
            live_confirmed=False,
        )

    # -- review and confirm -----------------------------------------------------------
    def open_review(self) -> None:
        """Validate the inputs and show the confirmation step (nothing is deployed yet)."""
        try:
            spec = self.spec()
        except WorkbenchError as exc:
            self.message.show(str(exc), "error")
            self.close_review()
            return
        self.pending = spec
        self.message.clear()
        live = spec.mode == "live"
        params = spec.params if spec.params is not None else self.loaded.params
        source = ("newest optimized (" + self.loaded.freshness + ", " + when(self.loaded.optimized_at.timestamp()) + ")"
                  if spec.params is None else "as entered")
        risk = RiskLimits.from_dict(dict(spec.risk))
        rows = [("deployment", f"{spec.strategy} on {', '.join(spec.symbols)} {spec.timeframe} ({spec.direction})"),
                ("venue", f"{spec.venue}" + (f", account {spec.account}" if spec.account else "")),
                ("mode", spec.mode.upper()),
                ("parameters", ", ".join(f"{k}={v:g}" for k, v in params.items()) + f" ({source})"),
                ("sizing", f"{risk.size_pct:.2%} of equity per entry" if risk.size_mode == "pct_equity" else f"{risk.size_quote:g} per position"),
                ("stop loss / take profit", f"{_off(risk.stop_loss)} / {_off(risk.take_profit)}"),
                ("daily loss limit / drawdown limit", f"{_off(risk.daily_loss_limit)} / {_off(risk.drawdown_limit)}"),
                ("max open positions / leverage", f"{risk.max_open_positions or 'off'} / {risk.leverage:g}x (max {risk.max_leverage or 'off'})")]
        self.summary.value = ("<table>" + "".join(f"<tr><td><b>{esc(k)}</b></td><td>{esc(v)}</td></tr>" for k, v in rows) + "</table>")
        if live:
            self.live_warning.value = (
                '<div style="background:#d62728;color:white;padding:8px;border-radius:4px;font-weight:600">'
                f"LIVE TRADING WITH REAL MONEY on account {esc(spec.account)}. Orders are sent to the exchange at once. "
                f"Type the account name or {LIVE_WORD} below to confirm.</div>")
            self.confirm.description, self.confirm.button_style = "Confirm LIVE deployment", "danger"
        else:
            self.live_warning.value = ""
            self.confirm.description, self.confirm.button_style = "Confirm and deploy", "success"
        self.live_confirm.value = ""
        show(self.live_warning, live)
        show(self.live_confirm, live)
        show(self.confirm_box, True)

    def close_review(self, why: str = "") -> None:
        self.pending = None
        show(self.confirm_box, False)
        if why:
            self.message.show(why, "info")

    def do_deploy(self) -> str | int | None:
        """Deploy the reviewed spec: engine.deploy here, or a queued 'deploy' command; returns the id."""
        spec = self.pending
        if spec is None:
            self.message.show("Review the deployment first.", "error")
            return None
        if spec.mode == "live":
            typed = self.live_confirm.value.strip()
            if typed not in (LIVE_WORD, spec.account):
                self.message.show(f"Type the account name ({spec.account}) or {LIVE_WORD} to confirm a live deployment.", "error")
                return None
            spec = dataclasses.replace(spec, live_confirmed=True)
        try:
            if self.engine is not None:
                rt = self.engine.deploy(spec, actor=ACTOR)
                self.last_deployment = rt.id
                self.message.show(f"Deployed {rt.id}: {spec.strategy} on {', '.join(spec.symbols)} ({spec.mode}).", "ok")
                if self.do_warm_up:
                    try:
                        self.engine.warm_up(rt.id)
                    except WorkbenchError as exc:
                        self.message.show(f"Deployed {rt.id}, but its warm-up failed: {exc}", "warning")
                result: str | int = rt.id
            else:
                cid = self.store.submit_command("deploy", None, spec.to_dict(), actor=ACTOR)
                self.last_command = cid
                self.message.show(f"Deploy queued as command #{cid}; a running engine (workbench engine) starts it within a second.", "ok")
                result = cid
        except WorkbenchError as exc:
            self.message.show(str(exc), "error")
            return None
        finally:
            self.live_confirm.value = ""
        self.pending = None
        show(self.confirm_box, False)
        return result


def _off(v: float | None) -> str:
    return "off" if v is None else f"{v:.2%}"


def deploy_panel(engine_or_store: Any, params_dir: str = "params", accounts: Any = None, **kwargs: Any) -> DeployPanel:
    """The deploy panel over an in-kernel Engine (deploys at once) or a Store (queues for a running engine)."""
    return DeployPanel(engine_or_store, params_dir=params_dir, accounts=accounts, **kwargs)
