"""Scheduled faults: what the emulated exchange does wrong, to which operation, how often.

``faults.add('create_order', 'drop_after_accept', times=1)`` makes the next
order request be accepted (the order exists) and then the connection close
with no reply. Operations are the emulator's route names (see
:data:`workbench.emulator.server.ROUTES`) or ``'*'`` for every request.
"""
from __future__ import annotations

import threading
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
}


@dataclass
class Fault:
    """One scheduled fault; `times` None means until removed."""

    op: str
    kind: str
    times: int | None = 1
    params: dict[str, Any] = field(default_factory=dict)
    fired: int = 0

    def matches(self, op: str) -> bool:
        return (self.op == "*" or self.op == op) and (self.times is None or self.fired < self.times)


class Faults:
    """The schedule of faults, consulted once per request (thread-safe)."""

    def __init__(self, ops: tuple[str, ...] = ()) -> None:
        self._ops = ops
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        #: (op, kind) of every fault that fired, in order
        self.log: list[tuple[str, str]] = []

    def add(self, op: str, kind: str, times: int | None = 1, **params: Any) -> Fault:
        """Schedule `kind` for the next `times` requests of `op` (None: every one)."""
        if kind not in KINDS:
            raise unknown("fault kind", kind, KINDS)
        if self._ops and op != "*" and op not in self._ops:
            raise unknown("emulator operation", op, (*self._ops, "*"))
        if times is not None and (not isinstance(times, int) or times < 1):
            raise ConfigError(f"times must be a positive integer or None (forever), got {times!r}.")
        fault = Fault(op, kind, times, dict(params))
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, op: str) -> Fault | None:
        """The first fault scheduled for `op`, counted as fired; None when there is none."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(op):
                    fault.fired += 1
                    self.log.append((op, fault.kind))
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return [f for f in self._faults if f.times is None or f.fired < f.times]
