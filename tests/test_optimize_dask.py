"""The optimizer on a real Dask LocalCluster (loopback only) returns exactly the in-process table."""
from __future__ import annotations

import pandas as pd
import pytest

from workbench.backtest import BacktestConfig
from workbench.data import sample_ohlcv
from workbench.errors import ConfigError
from workbench.fills import Costs
from workbench.optimize import optimize
from workbench.strategies import Param, Signals, strategy

distributed = pytest.importorskip("distributed")

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
CONFIG = BacktestConfig(sl=0.02, tp=0.04, costs=Costs(taker_fee=0.001, slippage=0.0005))


@pytest.fixture(scope="module")
def frames():
    return {s: sample_ohlcv(s, "1h", 1200) for s in SYMBOLS}


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address="127.0.0.1:0") as lc:
        yield lc


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def in_process(frames):
    return optimize("sma_cross", list(frames), "1h", data=frames, config=CONFIG, min_trades=0, progress=False)


def test_cluster_table_equals_in_process_exactly(frames, client, in_process):
    res = optimize("sma_cross", list(frames), "1h", data=frames, config=CONFIG, min_trades=0, progress=False,
                   cluster=client, chunk_size=7)
    assert res.engine == in_process.engine == "kernel"
    assert len(res.table) == 3 * 90
    pd.testing.assert_frame_equal(res.table, in_process.table, check_exact=True)
    assert res.best() == in_process.best()
    assert client.status == "running"  # a Client passed in is left open


def test_scheduler_address_and_cluster_object(frames, cluster, in_process):
    sub = {"ETH/USDT": frames["ETH/USDT"]}
    want = in_process.table[in_process.table["symbol"] == "ETH/USDT"].reset_index(drop=True)
    for target in (cluster.scheduler_address, cluster):
        res = optimize("sma_cross", None, "1h", data=sub, config=CONFIG, min_trades=0, progress=False, cluster=target)
        pd.testing.assert_frame_equal(res.table, want, check_exact=True)


@strategy(lookback=Param(20, 10, 60, 10), hold=Param(10, 5, 20, 5), warmup=lambda p: int(p["lookback"]) + int(p["hold"]) + 1)
def breakout(df, lookback, hold):
    """Long on a new `lookback` high, out after `hold` bars without one."""
    high = df.close.rolling(int(lookback)).max().shift()
    up = df.close > high
    return Signals(entries=up, exits=~up.rolling(int(hold)).max().astype(bool))


@pytest.mark.filterwarnings("ignore:Couldn't detect a suitable IP address")  # the inproc worker's probe
def test_user_strategy_on_thread_workers_equals_in_process(frames):
    # Thread workers share this process's vectorbt compile; process workers would each pay ~15 s.
    kw = dict(data=frames, ranges={"lookback": [10, 40], "hold": [5, 15]}, config=BacktestConfig(tp=0.03),
              min_trades=0, progress=False)
    here = optimize(breakout, ["BTC/USDT", "SOL/USDT"], "1h", **kw)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,  # inproc: no sockets
                                  dashboard_address="127.0.0.1:0") as lc, distributed.Client(lc) as c:
        there = optimize(breakout, ["BTC/USDT", "SOL/USDT"], "1h", cluster=c, chunk_size=1, **kw)
    assert here.engine == there.engine == "vectorbt"
    pd.testing.assert_frame_equal(there.table, here.table, check_exact=True)


def test_local_cluster_is_started_and_shut_down(frames, in_process):
    sub = {"BTC/USDT": frames["BTC/USDT"]}
    res = optimize("sma_cross", None, "1h", data=sub, config=CONFIG, min_trades=0, progress=False, cluster="local")
    want = in_process.table[in_process.table["symbol"] == "BTC/USDT"].reset_index(drop=True)
    pd.testing.assert_frame_equal(res.table, want, check_exact=True)


@pytest.mark.parametrize("bad", [42, "localhost", "cluster"])
def test_bad_cluster_argument(frames, bad):
    with pytest.raises(ConfigError, match="cluster must be None"):
        optimize("sma_cross", ["BTC/USDT"], "1h", data=frames, progress=False, cluster=bad)


def test_task_chunks_cover_every_thread():
    from workbench.optimize.distributed import task_chunk

    assert task_chunk(1000, 90, 1, 2, None) == 23  # 4 tasks for 2 threads
    assert task_chunk(1000, 90, 10, 2, None) == 90  # many symbols: one task per symbol already suffices
    assert task_chunk(1000, 90, 1, 2, 7) == 7
    assert task_chunk(4_000_000, 90, 1, 2, None) == 1  # memory bound wins
