"""Pytest fixtures: a Bybit emulator on a free loopback port, and ccxt's bybit class pointed at it.

Use from any test file (tests/ is on sys.path through its conftest):

    pytest_plugins = ("emulator_fixture",)  # fixtures: emulator, bybit, emulator_factory

    def test_something(emulator, bybit):
        bybit.create_order("BTC/USDT:USDT", "market", "buy", 0.01)
        emulator.advance(bars=1)

The emulator runs on a manual clock (tests move it with ``advance``/``set_time``)
over the embedded sample's 1h bars of BTC/USDT and ETH/USDT, with 100,000 USDT.
"""
from __future__ import annotations

import pytest

from workbench.emulator import Emulator

#: ccxt client timeout in tests: short, so fault tests (hangs) finish quickly
CLIENT_TIMEOUT_MS = 1500


def make_emulator(**kwargs) -> Emulator:
    """An emulator with the fixture's defaults, overridable per test (not started)."""
    options = {"symbols": ["BTC/USDT", "ETH/USDT"], "timeframe": "1h", "start": "2024-02-01", "hang_seconds": 5.0}
    options.update(kwargs)
    return Emulator(**options)


@pytest.fixture
def emulator():
    """A started emulator; stopped (and every hanging request released) after the test."""
    emu = make_emulator().start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def emulator_factory():
    """``emulator_factory(**overrides)`` -> an Emulator with the fixture's defaults; started ones stop after the test."""
    made: list[Emulator] = []

    def factory(**kwargs) -> Emulator:
        emu = make_emulator(**kwargs)
        made.append(emu)
        return emu

    yield factory
    for emu in made:
        emu.stop()


@pytest.fixture
def bybit(emulator):
    """ccxt.bybit signed with the emulator's demo key, URLs pointed at it, markets loaded."""
    exchange = emulator.client(timeout_ms=CLIENT_TIMEOUT_MS)
    exchange.load_markets()
    return exchange
