"""Replays: runs of quiet bars applied in bulk leave exactly the store a bar-by-bar replay leaves."""
from __future__ import annotations

import json
import sys

import pandas as pd
import pytest

from workbench.data import sample_ohlcv
from workbench.engine import DeploymentSpec, replay
from workbench.engine.deployment import DeploymentRuntime

replay_module = sys.modules["workbench.engine.replay"]

WALL_CLOCK = {"updated_at", "status_history", "handled_at", "beat_at", "started_at", "stopped_at", "created_at"}


def _tables(res) -> dict[str, pd.DataFrame]:
    """The deployment's rows, its (random) id replaced by DEP, wall-clock columns left out."""
    dep = res.deployment_id
    out = {}
    for name in ("orders", "fills", "positions", "trades", "equity", "risk_events"):
        df = res.store.frame(name, deployment_id=dep)
        df = df.drop(columns=[c for c in df.columns if c in WALL_CLOCK])
        out[name] = df.map(lambda x: x.replace(dep, "DEP") if isinstance(x, str) else x)
    changes = res.store.frame("status_changes", deployment_id=dep)
    out["status_changes"] = changes[["old", "new", "reason"]]
    out["venue"] = json.loads(json.dumps(res.store.load_venue_state(f"paper:{dep}")).replace(dep, "DEP"))
    return out


CASES = {
    "long-sl-tp-pauses": DeploymentSpec(
        "sma_cross", ("BTC/USDT",), "1h", params={"fast": 10, "slow": 30},
        risk={"stop_loss": 0.02, "take_profit": 0.04, "daily_loss_limit": 0.005, "drawdown_limit": 0.1, "cooldown_seconds": 3600,
              "size_pct": 0.9}),
    "short-perp-leverage": DeploymentSpec(
        "sma_cross", ("ETH/USDT:USDT",), "1h", params={"fast": 5, "slow": 20}, direction="short",
        risk={"stop_loss": 0.05, "take_profit": None, "leverage": 5, "max_leverage": 10, "daily_loss_limit": None, "drawdown_limit": 0.2}),
    "rsi-no-stops": DeploymentSpec("rsi_reversion", ("SOL/USDT",), "15m", params={"period": 14, "oversold": 30, "overbought": 70}, risk={"daily_loss_limit": 0.02, "drawdown_limit": None}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_quiet_bars_in_bulk_leave_the_same_store(case, tmp_path, monkeypatch):
    spec = CASES[case]
    sym = spec.symbols[0]
    data = {sym: sample_ohlcv(sym.split(":")[0], spec.timeframe, 2500)}
    skipped = []
    real_skip = DeploymentRuntime.skip_quiet
    monkeypatch.setattr(DeploymentRuntime, "skip_quiet", lambda self, *a: skipped.append(a[-1] - a[-2]) or real_skip(self, *a))
    bulk = replay(spec, data=data, store=str(tmp_path / "bulk.sqlite"))
    monkeypatch.setattr(replay_module, "SKIP_QUIET_BARS", False)
    each = replay(spec, data=data, store=str(tmp_path / "each.sqlite"))
    assert sum(skipped) > 250, "runs of quiet bars must be exercised"
    assert len(each.trades) >= 5 or case == "long-sl-tp-pauses"
    got, want = _tables(bulk), _tables(each)
    assert got.pop("venue") == want.pop("venue")
    for name in want:
        pd.testing.assert_frame_equal(got[name], want[name], check_exact=True, obj=name)
    assert bulk.summary == each.summary
    if case == "long-sl-tp-pauses":
        assert {"paused", "resumed"} <= set(want["risk_events"]["kind"]), "the risk pauses must be exercised"
