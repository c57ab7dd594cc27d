"""A deployment's own books: cash, open positions, realized P&L; equity = cash + marked positions.

Spot longs hold the asset (cash pays the notional); contract positions and
shorts are margin positions (cash carries fees and realized P&L only). Both
give the same P&L. The books are derived from the store on restart.
"""
from __future__ import annotations

from dataclasses import dataclass, field

#: order purposes that protect a position: its stop loss, its take profit, or both on one order (a stop pair)
PROTECTIVE = ("stop_loss", "take_profit", "protect")


@dataclass
class OpenPosition:
    """A position the deployment holds, with its protective levels and orders."""

    id: int
    symbol: str
    side: str  # long | short
    amount: float
    entry_price: float
    entry_at: float
    entry_fee: float
    margin: bool
    confidence: float = 1.0
    sl_price: float = float("nan")
    tp_price: float = float("nan")
    sl_cid: str | None = None
    tp_cid: str | None = None
    sl_order_id: str | None = None
    tp_order_id: str | None = None

    def value(self, mark: float) -> float:
        """What the position adds to equity at `mark`."""
        if self.margin:
            sign = 1.0 if self.side == "long" else -1.0
            return sign * (mark - self.entry_price) * self.amount
        return self.amount * mark

    def gross_pnl(self, exit_price: float) -> float:
        sign = 1.0 if self.side == "long" else -1.0
        return sign * (exit_price - self.entry_price) * self.amount


@dataclass
class Ledger:
    """Cash and open positions of one deployment."""

    cash: float
    positions: dict[str, OpenPosition] = field(default_factory=dict)
    realized: float = 0.0
    fees: float = 0.0

    def open(self, pos: OpenPosition) -> None:
        self.positions[pos.symbol] = pos
        self.fees += pos.entry_fee
        if pos.margin:
            self.cash -= pos.entry_fee
        else:
            self.cash -= pos.amount * pos.entry_price + pos.entry_fee

    def close(self, symbol: str, exit_price: float, exit_fee: float) -> tuple[OpenPosition, float]:
        """Remove the position; return it with its net P&L (after both fees)."""
        pos = self.positions.pop(symbol)
        gross = pos.gross_pnl(exit_price)
        self.fees += exit_fee
        if pos.margin:
            self.cash += gross - exit_fee
        else:
            self.cash += pos.amount * exit_price - exit_fee
        pnl = gross - pos.entry_fee - exit_fee
        self.realized += pnl
        return pos, pnl

    def equity(self, marks: dict[str, float]) -> float:
        return self.cash + sum(p.value(marks.get(s, p.entry_price)) for s, p in self.positions.items())

    def unrealized(self, marks: dict[str, float]) -> float:
        return sum(p.gross_pnl(marks.get(s, p.entry_price)) for s, p in self.positions.items())
