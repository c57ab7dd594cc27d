"""Connection state of a venue, for panels and for reconnecting with backoff.

Every venue keeps a :class:`ConnectionState` (disconnected / connecting /
connected / error, the last successful call, its latency, the last error).
:class:`Reconnector` brings venues in the error state back with exponential
backoff; the engine loop or a panel timer calls :meth:`Reconnector.poll`.
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

STATUSES = ("disconnected", "connecting", "connected", "error")


@dataclass
class ConnectionState:
    """Per-venue connection status: disconnected/connecting/connected/error."""

    status: str = "disconnected"
    last_ok: float | None = None
    latency_ms: float | None = None
    error: str | None = None
    failures: int = 0
    retry_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Connectable(Protocol):
    id: str
    connection: ConnectionState

    def connect(self) -> ConnectionState: ...


@dataclass
class Backoff:
    """Delays between reconnection attempts: base * 2**failures, capped, with jitter."""

    base: float = 1.0
    cap: float = 60.0
    jitter: float = 0.2

    def delay(self, failures: int, rng: random.Random) -> float:
        d = min(self.cap, self.base * 2 ** max(0, failures - 1))
        return d * (1 + self.jitter * (2 * rng.random() - 1))


class Reconnector:
    """Reconnect venues that are in the error state, with exponential backoff.

    A venue someone disconnected on purpose stays disconnected. `clock` gives
    seconds (inject one in tests); `poll()` returns the ids it tried.
    """

    def __init__(self, venues: Iterable[Connectable] = (), backoff: Backoff | None = None,
                 clock: Callable[[], float] = time.time, seed: int = 0) -> None:
        self.venues: list[Connectable] = list(venues)
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.rng = random.Random(seed)

    def add(self, venue: Connectable) -> None:
        if venue not in self.venues:
            self.venues.append(venue)

    def poll(self) -> list[str]:
        tried = []
        now = self.clock()
        for venue in self.venues:
            state = venue.connection
            if state.status != "error":
                continue
            if state.retry_at is None:
                state.retry_at = now + self.backoff.delay(max(1, state.failures), self.rng)
                continue
            if now < state.retry_at:
                continue
            tried.append(venue.id)
            try:
                venue.connect()
            except Exception as exc:  # noqa: BLE001 - any failure is recorded on the state and retried later
                state = venue.connection
                state.status = "error"
                state.error = state.error or f"{type(exc).__name__}: {exc}"
            state = venue.connection
            if state.status == "error":
                state.failures = max(1, state.failures) + 1
                state.retry_at = now + self.backoff.delay(state.failures, self.rng)
        return tried
