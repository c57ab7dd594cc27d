"""Shared fixtures: small sample frames, temp stores, the shared real data folder."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

pytest_plugins = ("emulator_fixture", "postgres_fixture")  # fixtures: emulator, bybit, emulator_factory; postgres_url

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("WORKBENCH_SHARED", ROOT.parent / "shared"))


@pytest.fixture(autouse=True, scope="session")
def _loopback_only():
    """Tests never reach past loopback: refuse any other connection."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("127.") and not str(host).startswith("/"):
            raise OSError(f"network access to {host!r} blocked in tests (loopback only)")
        return real_connect(self, address)

    socket.socket.connect = guarded
    yield
    socket.socket.connect = real_connect


@pytest.fixture
def shared_data() -> Path:
    """../shared/data; tests that need it skip with a reason where it is absent."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip(f"shared test data not found at {path} (set WORKBENCH_SHARED)")
    return path


@pytest.fixture
def btc_1h():
    from workbench.data import sample_ohlcv

    return sample_ohlcv("BTC/USDT", "1h", 3000)
