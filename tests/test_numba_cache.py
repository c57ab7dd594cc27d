"""workbench.numba_cache: vectorbt's uncached simulator is compiled once per machine, with identical results."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

KERNEL = """
import numba

@numba.njit
def triple(x):
    return 3 * x
"""

USE = """
import json, sys
sys.path.insert(0, {folder!r})
import kern
from workbench.numba_cache import enable_disk_cache
enabled = enable_disk_cache(kern.triple)
value = kern.triple(7)
st = kern.triple.stats
print(json.dumps({{"enabled": enabled, "value": value, "hits": sum(st.cache_hits.values()), "misses": sum(st.cache_misses.values())}}))
"""


def child(code: str, cache_dir, timeout: int = 300) -> dict:
    env_code = f"import os; os.environ['NUMBA_CACHE_DIR'] = {str(cache_dir)!r}\n" + code
    out = subprocess.run([sys.executable, "-c", env_code], check=True, capture_output=True, text=True, timeout=timeout)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_second_process_loads_the_compiled_function_from_disk(tmp_path):
    (tmp_path / "kern.py").write_text(KERNEL)
    first = child(USE.format(folder=str(tmp_path)), tmp_path / "cache")
    second = child(USE.format(folder=str(tmp_path)), tmp_path / "cache")
    assert first["enabled"] and first["misses"] == 1 and first["hits"] == 0
    assert second["hits"] == 1 and second["misses"] == 0 and second["value"] == first["value"] == 21


def test_vectorbt_simulator_is_cached_and_calls_are_idempotent():
    from numba.core.caching import NullCache
    from vectorbt.portfolio import nb

    from workbench.numba_cache import VECTORBT_KERNELS, cache_vectorbt_kernels

    assert cache_vectorbt_kernels() == {name: True for name in VECTORBT_KERNELS}
    assert not isinstance(nb.simulate_from_signals_nb._cache, NullCache)
    cache = nb.simulate_from_signals_nb._cache
    cache_vectorbt_kernels()
    assert nb.simulate_from_signals_nb._cache is cache, "a second call leaves the cache as it is"


def test_a_function_without_a_source_file_is_left_uncached_with_a_warning_saying_how_to_fix():
    import numba

    from workbench.numba_cache import enable_disk_cache

    scope: dict = {}
    exec("def f(x):\n    return x + 1\n", scope)  # no file: numba has nowhere to key the cache
    fn = numba.njit(scope["f"])
    with pytest.warns(RuntimeWarning, match="NUMBA_CACHE_DIR"):
        assert enable_disk_cache(fn) is False
    assert fn(1) == 2
    assert enable_disk_cache(lambda x: x) is False


BACKTEST = """
import json, hashlib
from vectorbt.portfolio import nb
from workbench.backtest import BacktestConfig, backtest, metrics
from workbench.data import sample_ohlcv
df = sample_ohlcv("BTC/USDT", "1h", 400)
out = {}
for name, cfg in {"long": BacktestConfig(sl=0.02, tp=0.04), "both": BacktestConfig(direction="both", size_pct=None, size_quote=1000.0)}.items():
    pf = backtest("sma_cross", df, {"fast": 5, "slow": 20}, cfg)
    out[name] = [hashlib.sha256(pf.orders.values.tobytes() + pf.value().to_numpy().tobytes()).hexdigest(), metrics(pf)]
st = nb.simulate_from_signals_nb.stats
print(json.dumps({"out": out, "hits": sum(st.cache_hits.values()), "misses": sum(st.cache_misses.values())}))
"""


@pytest.mark.slow
def test_backtests_in_a_second_process_hit_the_cache_and_match_byte_for_byte(tmp_path):
    first = child(textwrap.dedent(BACKTEST), tmp_path / "cache", timeout=900)
    second = child(textwrap.dedent(BACKTEST), tmp_path / "cache", timeout=900)
    assert first["misses"] == 2 and first["hits"] == 0
    assert second["hits"] == 2 and second["misses"] == 0
    assert second["out"] == first["out"]
