"""Fuzzing the boundaries: bad input gets a clear error, and nothing already stored changes."""
from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.cli import main
from workbench.engine import DeploymentSpec
from workbench.errors import ConfigError, ParamsError, WorkbenchError
from workbench.params import ParamSet, ParamStore
from workbench.risk import RiskLimits

junk = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                 st.text(max_size=12), st.lists(st.integers(), max_size=3))
FIELDS = ["strategy", "symbols", "timeframe", "params", "venue", "mode", "risk", "direction", "initial_cash", "costs"]


@settings(max_examples=200, deadline=None)
@given(data=st.dictionaries(st.sampled_from(FIELDS + ["stratgy", "leverage", "x"]), junk, max_size=6))
def test_deployment_spec_fuzz_only_raises_config_errors(data):
    try:
        spec = DeploymentSpec.from_dict({"strategy": "sma_cross", "symbols": ["BTC/USDT"], **data})
    except ConfigError as exc:
        assert str(exc) and "Traceback" not in str(exc)
    except TypeError as exc:  # a field given a wrong kind of value is still a ConfigError
        pytest.fail(f"TypeError leaked from DeploymentSpec: {exc}")
    else:
        assert spec.symbols and spec.mode in ("paper", "live")


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(list(RiskLimits.fields()) + ["stop_los", "size"]), value=junk)
def test_risk_limits_fuzz(name, value):
    try:
        limits = RiskLimits.from_dict({name: value})
    except ConfigError as exc:
        assert name.split("_")[0] in str(exc) or "Did you mean" in str(exc) or name in str(exc)
    else:
        v = getattr(limits, name)
        assert v is None or isinstance(v, (bool, str)) or (isinstance(v, (int, float)) and math.isfinite(v))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.one_of(st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
                      st.dictionaries(st.text(max_size=8), junk, max_size=5).map(json.dumps),
                      st.builds(lambda x: json.dumps({"schema_version": 1, "latest": x}), junk)))
def test_param_file_fuzz_never_blocks_other_files(tmp_path_factory, blob):
    root = tmp_path_factory.mktemp("params")
    store = ParamStore(root)
    good = store.save(ParamSet("sma_cross", "BTC/USDT", "1h", {"fast": 10, "slow": 30}, datetime.now(UTC)))
    good_bytes = good.read_bytes()
    bad = store.path_for("sma_cross", "ETH/USDT", "1h")
    bad.write_text(blob)
    try:
        store.load_latest("sma_cross", "ETH/USDT", "1h")
    except ParamsError as exc:
        assert "ETH-USDT_1h.json" in str(exc) or "Invalid parameter record" in str(exc)
    records, errors = store.list()
    assert any(r.symbol == "BTC/USDT" for r in records)
    assert good.read_bytes() == good_bytes


CLI_WORDS = ["optimize", "deploy", "replay", "status", "stop", "pause", "resume", "emergency-stop", "--strategy",
             "sma_cross", "nope", "--symbols", "BTC/USDT", ",", "--timeframe", "1h", "7q", "--params", "fast=x",
             "fast", "=", "--risk", "size_pct=-1", "max_open_positions=0", "--bars", "-5", "--cash", "nan", "--metric",
             "sharp", "--min-trades", "-1", "--wait", "0", "abc"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(argv=st.lists(st.sampled_from(CLI_WORDS), min_size=1, max_size=7))
def test_cli_fuzz_exits_cleanly_and_changes_nothing(tmp_path_factory, capsys, argv):
    home = tmp_path_factory.mktemp("home")
    if argv[0] in ("deploy", "replay", "optimize"):
        argv = argv + ["--bars", "-5"]  # keep every fuzzed run from doing real work: always invalid
    try:
        code = main(["--home", str(home), *argv])
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    except WorkbenchError as exc:  # pragma: no cover - main() must catch these
        pytest.fail(f"main() let {exc!r} escape")
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out
    assert code in (0, 1, 2, 3)
    if code == 2:
        assert out.err.strip(), "an error exit explains itself on stderr"
    stored = home / "workbench.sqlite"
    if stored.exists():
        from workbench.store import Store

        s = Store(stored)
        assert s.deployments() == [] and s.frame("orders").empty


@pytest.mark.parametrize("bad", [
    {"symbols": []}, {"symbols": "BTCUSDT"}, {"initial_cash": -1}, {"initial_cash": float("inf")},
    {"costs": {"taker_fee": 2}}, {"direction": "sideways"}, {"venue": "papr"}, {"mode": "real"},
])
def test_deployment_spec_messages_say_how_to_fix(bad):
    with pytest.raises(ConfigError) as err:
        DeploymentSpec.from_dict({"strategy": "sma_cross", "symbols": ["BTC/USDT"], **bad})
    assert len(str(err.value)) > 20


def test_backtest_both_directions_needs_quote_sizing():
    from workbench.backtest import BacktestConfig

    with pytest.raises(ConfigError, match="size_quote"):
        BacktestConfig(direction="both")
    assert BacktestConfig(direction="both", size_pct=None, size_quote=100.0).direction == "both"
