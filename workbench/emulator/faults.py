"""Scheduled faults: what the emulated exchange does wrong, to which operation, how often.

``faults.add('create_order', 'drop_after_accept', times=1)`` makes the next
order request be accepted (the order exists) and then the connection close
with no reply. Operations are the emulator's route names (see
:data:`workbench.emulator.server.ROUTES`) or ``'*'`` for every request.

``faults.down(seconds=60)`` takes the whole venue down: every request fails
(HTTP 503, or the connection closed unanswered with ``refuse=True``) until
`seconds` have passed on the faults' clock (injectable, so a test moves a
fake clock instead of waiting a real minute) or until :meth:`Faults.up`.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, unknown

#: fault kind -> what it does
KINDS: dict[str, str] = {
    "latency": "answer normally after `seconds` (default 0.5)",
    "timeout": "hang `seconds` (default: longer than any sane client timeout) without processing, then close",
    "timeout_after_accept": "process the request, then hang and close without a reply",
    "http_error": "answer HTTP `status` (default 503) with an HTML body, without processing",
    "rate_limit": "answer retCode 10006 'Too many visits!' with X-Bapi-Limit-* headers, without processing",
    "drop": "close the connection without processing or replying",
    "drop_after_accept": "process the request (an order is placed), then close without a reply",
    "insufficient_balance": "refuse an order with retCode 110007 'ab not enough for new order'",
    "down": "fail every request without processing (HTTP `status` 503, or `refuse`: close unanswered) until `until` "
            "on the faults' clock or until cleared",
}


@dataclass
class Fault:
    """One scheduled fault; `times` None means until removed; `until` (faults' clock, seconds) ends it early."""

    op: str
    kind: str
    times: int | None = 1
    params: dict[str, Any] = field(default_factory=dict)
    fired: int = 0
    until: float | None = None

    def matches(self, op: str, now: float | None = None) -> bool:
        if self.until is not None and now is not None and now >= self.until:
            return False
        return (self.op == "*" or self.op == op) and (self.times is None or self.fired < self.times)


class Faults:
    """The schedule of faults, consulted once per request (thread-safe)."""

    def __init__(self, ops: tuple[str, ...] = (), clock: Callable[[], float] = time.time) -> None:
        self._ops = ops
        self.clock = clock
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        #: (op, kind) of every fault that fired, in order
        self.log: list[tuple[str, str]] = []

    def add(self, op: str, kind: str, times: int | None = 1, until: float | None = None, **params: Any) -> Fault:
        """Schedule `kind` for the next `times` requests of `op` (None: every one), ending at `until` if given."""
        if kind not in KINDS:
            raise unknown("fault kind", kind, KINDS)
        if self._ops and op != "*" and op not in self._ops:
            raise unknown("emulator operation", op, (*self._ops, "*"))
        if times is not None and (not isinstance(times, int) or times < 1):
            raise ConfigError(f"times must be a positive integer or None (forever), got {times!r}.")
        if until is not None and (isinstance(until, bool) or not isinstance(until, (int, float))):
            raise ConfigError(f"until must be a time in seconds on the faults' clock, got {until!r}.")
        fault = Fault(op, kind, times, dict(params), until=None if until is None else float(until))
        with self._lock:
            self._faults.append(fault)
        return fault

    def down(self, seconds: float | None = None, until: float | None = None, op: str = "*", status: int = 503,
             refuse: bool = False) -> Fault:
        """Take the venue down: every request of `op` fails for `seconds` (or until `until`, or until :meth:`up`)."""
        if seconds is not None:
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
                raise ConfigError(f"seconds must be a positive number, got {seconds!r}.")
            until = self.clock() + float(seconds)
        params: dict[str, Any] = {"refuse": True} if refuse else {"status": int(status)}
        return self.add(op, "down", times=None, until=until, **params)

    def up(self) -> None:
        """End every 'down' fault now (the venue answers again)."""
        with self._lock:
            self._faults = [f for f in self._faults if f.kind != "down"]

    def is_down(self, op: str = "*") -> bool:
        """Whether a 'down' fault covers `op` now."""
        now = self.clock()
        with self._lock:
            return any(f.kind == "down" and f.matches(op, now) for f in self._faults)

    def take(self, op: str) -> Fault | None:
        """The first fault scheduled for `op`, counted as fired; None when there is none."""
        now = self.clock()
        with self._lock:
            for fault in self._faults:
                if fault.matches(op, now):
                    fault.fired += 1
                    self.log.append((op, fault.kind))
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            now = self.clock()
            return [f for f in self._faults if (f.times is None or f.fired < f.times) and (f.until is None or now < f.until)]
