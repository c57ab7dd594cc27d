"""Optimize panel: strategy, symbols, timeframe, parameter ranges, walk-forward toggle, run with progress,
results table, heatmap and equity curve, and save the winners to the param store.

It calls :func:`workbench.optimize.optimize` (or :func:`~workbench.optimize.walk_forward`)
one symbol at a time so the progress bar moves per symbol.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ipywidgets as w
import pandas as pd

from ..errors import ConfigError, WorkbenchError
from ..params import ParamSet, ParamStore
from ..strategies import BUILTINS, get_strategy
from .widgets import Message, Panel, button, esc, frame_table, header, show, styled

TIMEFRAMES = ("1m", "5m", "15m", "1h", "4h", "1d")
METRICS = ("sharpe", "total_return", "max_drawdown", "win_rate", "final_value")


def parse_range(text: str, name: str) -> list[float]:
    """'5:50:5' (low:high:step, inclusive) or '5, 10, 20' -> values."""
    text = text.strip()
    try:
        if ":" in text:
            parts = [float(p) for p in text.split(":")]
            if len(parts) != 3 or parts[2] <= 0 or parts[1] < parts[0]:
                raise ValueError
            lo, hi, step = parts
            n = int(round((hi - lo) / step)) + 1
            return [lo + i * step for i in range(n) if lo + i * step <= hi + 1e-9]
        values = [float(p) for p in text.replace(";", ",").split(",") if p.strip()]
    except ValueError:
        raise ConfigError(f"Range of {name!r}: {text!r} is not low:high:step (e.g. 5:50:5) or a list (e.g. 5, 10, 20).") from None
    if not values:
        raise ConfigError(f"Range of {name!r} is empty; give low:high:step or a list of values.")
    return values


class OptimizePanel(Panel):
    def __init__(self, params_dir: str | ParamStore = "params", data: Mapping[str, pd.DataFrame] | None = None,
                 source: str = "sample", strategy: str = "sma_cross", symbols: tuple[str, ...] = ("BTC/USDT",),
                 timeframe: str = "1h", bars: int = 2000, min_trades: int = 10) -> None:
        self.params_store = params_dir if isinstance(params_dir, ParamStore) else ParamStore(params_dir)
        self.data = data
        self.source = source
        self.results: dict[str, Any] = {}
        self.figures: dict[str, Any] = {}
        self.saved: list[Any] = []
        self.message = Message("wb-opt-message")
        self.strategy = styled(w.Dropdown(options=sorted(BUILTINS), value=strategy, description="strategy"), "wb-opt-strategy")
        self.symbols = styled(w.Text(value=", ".join(symbols), description="symbols"), "wb-opt-symbols")
        self.timeframe = styled(w.Dropdown(options=list(dict.fromkeys([*TIMEFRAMES, timeframe])), value=timeframe,
                                           description="timeframe"), "wb-opt-timeframe")
        self.bars = styled(w.IntText(value=bars, description="bars"), "wb-opt-bars")
        self.metric = styled(w.Dropdown(options=METRICS, value="sharpe", description="metric"), "wb-opt-metric")
        self.min_trades = styled(w.IntText(value=min_trades, description="min trades"), "wb-opt-min-trades")
        self.range_box = styled(w.VBox([]), "wb-opt-ranges")
        self.ranges: dict[str, w.Text] = {}
        self.walkforward = styled(w.Checkbox(value=False, description="walk-forward"), "wb-opt-walkforward")
        self.train_bars = styled(w.IntText(value=1000, description="train bars"), "wb-opt-train-bars")
        self.test_bars = styled(w.IntText(value=250, description="test bars"), "wb-opt-test-bars")
        self.run = button("Run", "wb-opt-run", "primary", icon="play")
        self.progress = styled(w.IntProgress(value=0, min=0, max=1, description="progress"), "wb-opt-progress")
        self.results_html = styled(w.HTML(""), "wb-opt-results")
        self.heatmap = styled(w.Output(), "wb-opt-heatmap")
        self.equity = styled(w.Output(), "wb-opt-equity")
        self.save = button("Save winners to the param store", "wb-opt-save", "success", icon="save")
        self.save.disabled = True
        self.strategy.observe(lambda _c: self._build_ranges(), names="value")
        self.walkforward.observe(lambda c: self._wf_visible(c["new"]), names="value")
        self.run.on_click(lambda _b: self.do_run())
        self.save.on_click(lambda _b: self.do_save())
        self._build_ranges()
        self._wf_visible(False)
        self.widget = styled(w.VBox([
            header("Optimize", f"saves to {self.params_store.root}"),
            w.HBox([self.strategy, self.symbols]), w.HBox([self.timeframe, self.bars]), w.HBox([self.metric, self.min_trades]),
            w.HTML("<b>Parameter ranges</b> (low:high:step or a list)"), self.range_box,
            w.HBox([self.walkforward, self.train_bars, self.test_bars]), w.HBox([self.run, self.progress]), self.message.widget,
            self.results_html, self.heatmap, self.equity, self.save,
        ]), "wb-opt-panel")

    def _wf_visible(self, on: bool) -> None:
        show(self.train_bars, on)
        show(self.test_bars, on)

    def _build_ranges(self) -> None:
        strat = get_strategy(self.strategy.value)
        self.ranges = {}
        for name, p in strat.params.items():
            text = f"{p.low:g}:{p.high:g}:{p.step:g}"
            self.ranges[name] = styled(w.Text(value=text, description=name), f"wb-opt-range-{name.replace('_', '-')}")
        self.range_box.children = list(self.ranges.values())
        self.results, self.save.disabled = {}, True

    def symbol_list(self) -> list[str]:
        syms = [s.strip() for s in self.symbols.value.split(",") if s.strip()]
        if not syms:
            raise ConfigError("Give at least one symbol, e.g. BTC/USDT.")
        return syms

    def do_run(self) -> dict[str, Any] | None:
        """Optimize (or walk forward) every symbol; fills the table, heatmap and equity curve."""
        from ..optimize import optimize, walk_forward

        try:
            syms = self.symbol_list()
            ranges = {k: parse_range(v.value, k) for k, v in self.ranges.items()}
            if self.bars.value < 2:
                raise ConfigError("bars must be at least 2.")
        except WorkbenchError as exc:
            self.message.show(str(exc), "error")
            return None
        self.results, self.save.disabled = {}, True
        self.progress.max, self.progress.value = len(syms), 0
        self.run.disabled = True
        self.message.show("running…", "info")
        try:
            for sym in syms:
                data = {sym: self.data[sym]} if self.data is not None and sym in self.data else None
                common = {"data": data, "ranges": ranges, "metric": self.metric.value, "min_trades": int(self.min_trades.value),
                          "source": self.source, "bars": None if data else int(self.bars.value), "progress": False}
                if self.walkforward.value:
                    self.results[sym] = walk_forward(self.strategy.value, sym, self.timeframe.value, train_bars=int(self.train_bars.value),
                                                     test_bars=int(self.test_bars.value), **common)
                else:
                    self.results[sym] = optimize(self.strategy.value, [sym], self.timeframe.value, **common)
                self.progress.value += 1
        except WorkbenchError as exc:
            self.message.show(str(exc), "error")
            return None
        finally:
            self.run.disabled = False
        self._show()
        return self.results

    def winners(self) -> dict[str, tuple[dict[str, float], dict[str, float]]]:
        """symbol -> (params, metrics) of the qualifying winner (walk-forward: the last fold's choice and OOS metrics)."""
        out = {}
        for sym, res in self.results.items():
            if hasattr(res, "best"):
                out.update(res.best(skip_missing=True))
            else:
                chosen = res.folds.dropna(subset=[c for c in res.folds.columns if c in res.strategy.params])
                if len(chosen):
                    last = chosen.iloc[-1]
                    out[sym] = (res.strategy.validate_params({k: last[k] for k in res.strategy.params}), dict(res.metrics))
        return out

    def _show(self) -> None:
        first = next(iter(self.results.values()))
        if hasattr(first, "table"):
            table = pd.concat([r.table for r in self.results.values()], ignore_index=True)
            table = table.sort_values(self.metric.value, ascending=False).groupby("symbol", sort=False).head(10)
        else:
            table = pd.concat([r.folds.assign(symbol=s) for s, r in self.results.items()], ignore_index=True)
        self.results_html.value = frame_table(table.round({c: 4 for c in table.select_dtypes("number").columns}), "wb-opt-results-table")
        winners = self.winners()
        missing = [s for s in self.results if s not in winners]
        self.heatmap.clear_output()
        self.equity.clear_output()
        names = list(get_strategy(self.strategy.value).params)
        self.figures = {}
        try:
            if hasattr(first, "heatmap") and len(names) >= 2:
                self.figures["heatmap"] = first.heatmap(names[0], names[1], metric=self.metric.value)
            self.figures["equity"] = first.equity() if callable(getattr(first, "equity", None)) else first.plot()
        except WorkbenchError as exc:
            self.message.show(str(exc), "warning")
        for out, key in ((self.heatmap, "heatmap"), (self.equity, "equity")):
            if key in self.figures:
                with out:
                    self.figures[key].show()
        self.save.disabled = not winners
        note = f"; no qualifying combination for {', '.join(missing)} (lower min trades or widen ranges)" if missing else ""
        self.message.show(f"done: winners for {len(winners)} symbol(s){note}", "ok" if not missing else "warning")

    def do_save(self) -> list[Any]:
        """Save each symbol's winner with its optimization date, data window, metrics and settings."""
        self.saved = []
        try:
            for sym, res in self.results.items():
                if hasattr(res, "save"):
                    if sym in res.best(skip_missing=True):
                        self.saved += res.save(self.params_store)
                elif sym in self.winners():
                    params, metrics = self.winners()[sym]
                    df = res.equity
                    self.saved.append(self.params_store.save(ParamSet(
                        strategy=res.strategy.name, symbol=sym, timeframe=res.timeframe, params=params,
                        optimized_at=pd.Timestamp.now(tz="UTC").to_pydatetime(),
                        data_start=str(df.index[0]) if len(df) else None, data_end=str(df.index[-1]) if len(df) else None,
                        metrics=metrics, optimizer={"method": "walk_forward", "metric": res.metric, "min_trades": res.min_trades,
                                                    "folds": int(len(res.folds))})))
        except WorkbenchError as exc:
            self.message.show(str(exc), "error")
            return []
        self.message.show(f"saved {len(self.saved)} parameter set(s) to {esc(self.params_store.root)}", "ok")
        return self.saved


def optimize_panel(params_dir: str | ParamStore = "params", data: Mapping[str, pd.DataFrame] | None = None, **kwargs: Any) -> OptimizePanel:
    """The optimizer panel; `data` maps symbols to OHLCV frames (default: the embedded sample, `bars` long)."""
    return OptimizePanel(params_dir, data=data, **kwargs)
