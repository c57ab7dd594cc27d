"""The pause state machine of one deployment: daily loss and drawdown limits, cooldown, resume.

What a trader can rely on:

* **Daily loss.** The day is the UTC calendar day of ``now``. Its starting
  equity is the equity at the first update of the day. When equity falls
  ``daily_loss_limit`` (a fraction of that start) below it, the deployment
  pauses: no new exposure, open positions keep their stops and exits. The
  pause lasts until the next UTC day (a recovery within the day does not
  lift it: a daily stop means done for the day) or a manual resume.
* **Drawdown.** When equity falls ``drawdown_limit`` below its peak, the
  deployment pauses until a manual resume, or until open positions recover
  the drawdown to at most half the limit (``RECOVERY``), so that equity
  hovering at the limit does not flap between paused and active.
* **Cooldown.** ``cooldown_seconds`` is the least time between a pause and an
  automatic resume, however quickly the breach clears. A manual resume is
  not delayed by it.
* **Manual resume** (:meth:`RiskGuard.resume`) lifts every pause at once and
  re-arms each breached limit from the current equity: the day's loss is then
  measured from the equity at the resume, the drawdown from it as a new peak.
  So a resumed deployment may lose another full limit before pausing again,
  never less. The reported ``day_start_equity`` and ``peak_equity`` stay true.
* Equity that is not a finite number is ignored (no pause, no resume): the
  order checks already refuse new exposure when the books cannot be measured.

The guard reads no clock: ``now`` (epoch seconds or a datetime) is passed in.
Its :meth:`state` is plain JSON, so the engine persists it across restarts.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ..errors import ConfigError
from .limits import RiskLimits
from .model import PortfolioView, RiskEvent, as_seconds, finite_number, positive_number

_INF = float("inf")
RECOVERY = 0.5  # a drawdown pause lifts by itself once the drawdown is back to this share of the limit
TOL = 1e-9
STATE_VERSION = 1
_RULES = ("daily_loss", "drawdown")


class RiskGuard:
    """Pauses one deployment when a loss limit is breached and resumes it when allowed (see module doc)."""

    def __init__(self, limits: RiskLimits) -> None:
        self.limits = limits
        self.day: str | None = None
        self.day_start_equity: float | None = None
        self.peak_equity: float | None = None
        self.loss_reference: float | None = None
        self.drawdown_peak: float | None = None
        self.breaches: dict[str, dict[str, Any]] = {}
        self.paused_at: float | None = None
        self.rearm: list[str] = []
        self._day_lo = self._day_hi = 0.0
        self._day_name = ""

    @property
    def paused(self) -> bool:
        return bool(self.breaches)

    @property
    def day_end(self) -> float:
        """When the UTC day of the last update ends (s): :meth:`quiet` answers alike for one equity until then."""
        return self._day_hi

    # -- the state machine ----------------------------------------------------
    def update(self, view: PortfolioView | float, now: float | datetime) -> list[RiskEvent]:
        """Take in the books (a view, or just the equity) at `now`; return the 'paused' and 'resumed' events this causes.

        The engine calls this on every bar, so the common case (same UTC day, no
        pause, no limit reached) returns after a few comparisons.
        """
        if type(view) is float and type(now) is float and self.quiet(view, now):
            return []
        t = as_seconds(now)
        if isinstance(view, PortfolioView):
            eq, day_start, peak = view.equity, view.day_start_equity, view.peak_equity
        else:
            eq, day_start, peak = view, None, None
        if not finite_number(eq):
            return []
        day = self._day_of(t)
        if self.day is None:
            start = day_start if positive_number(day_start) else eq
            self.day_start_equity = self.loss_reference = start
            peak = peak if finite_number(peak) else eq
            self.peak_equity = self.drawdown_peak = max(peak, eq)
        elif day != self.day:
            self.day_start_equity = self.loss_reference = eq
        self.day = day
        for rule in self.rearm:
            if rule == "daily_loss":
                self.loss_reference = eq
            else:
                self.drawdown_peak = eq
        self.rearm = []
        self.peak_equity = max(self.peak_equity or eq, eq)
        self.drawdown_peak = max(self.drawdown_peak or eq, eq)

        measures = self.measures(eq)
        events: list[RiskEvent] = []
        for rule in _RULES:
            limit = self._limit(rule)
            value = measures[rule]
            if limit is None or rule in self.breaches or value < limit * (1 - TOL):
                continue
            reason = self._breach_reason(rule, value, limit, eq)
            self.breaches[rule] = {"reason": reason, "value": value, "limit": limit, "day": day, "at": t}
            self.paused_at = t
            events.append(RiskEvent("paused", reason, {"rule": rule, "value": value, "limit": limit, "equity": eq,
                                                       "reference": self._reference(rule),
                                                       "resume": self._resume_rule(rule)}, t))
        if events or not self.breaches or t < self._retry_at():
            return events
        cleared = [r for r in self.breaches if self._cleared(r, measures[r], day)]
        for rule in cleared:
            del self.breaches[rule]
        if cleared and not self.breaches:
            self.paused_at = None
            reason = "Risk pause lifted: " + "; ".join(self._clear_reason(r, measures[r]) for r in cleared) + "."
            events.append(RiskEvent("resumed", reason, {"rules": cleared, "equity": eq, "manual": False,
                                                        **{r: measures[r] for r in cleared}}, t))
        return events

    def quiet(self, eq: float, t: float) -> bool:
        """True when `eq` at `t` changes nothing but the peaks: the same UTC day, no pause, no re-arm, no limit reached.

        The peaks are taken in either way. :meth:`update` starts with this; a
        replay calls it alone on bars where nothing else happens.
        """
        if self.day is None or self.breaches or self.rearm or not self._day_lo <= t < self._day_hi or not -_INF < eq < _INF:
            return False
        peak, dd_peak, start, ref = self.peak_equity, self.drawdown_peak, self.day_start_equity, self.loss_reference
        if peak is None or dd_peak is None:
            return False
        if eq > peak:
            self.peak_equity = eq
        if eq > dd_peak:
            self.drawdown_peak = dd_peak = eq
        dl, dd = self.limits.daily_loss_limit, self.limits.drawdown_limit
        if dl is not None and start is not None and start > 0 and ref is not None and (ref - eq) / start >= dl * (1 - TOL):
            return False
        if dd is not None and dd_peak > 0 and (dd_peak - eq) / dd_peak >= dd * (1 - TOL):
            return False
        return True

    def quiet_limits(self, t0: float) -> tuple[float, float, tuple[float, float, float] | None, float | None] | None:
        """What bars from `t0` on must stay within to be quiet, as :func:`workbench.scan.books_prefix` takes it.

        The scan applies :meth:`quiet`'s rule to a stretch of bars at once; :meth:`take_peak` then takes its peak.

        (day end, drawdown peak, (day's start equity, loss reference, level) or None, drawdown level or None);
        None when no bar from `t0` can be quiet (no day yet, a pause, a re-arm, another day).
        """
        if (self.day is None or self.breaches or self.rearm or self.peak_equity is None
                or self.drawdown_peak is None or not self._day_lo <= t0):
            return None
        dl, dd = self.limits.daily_loss_limit, self.limits.drawdown_limit
        start, ref = self.day_start_equity, self.loss_reference
        daily = (start, ref, dl * (1 - TOL)) if dl is not None and start is not None and start > 0 and ref is not None else None
        return self._day_hi, self.drawdown_peak, daily, None if dd is None else dd * (1 - TOL)

    def take_peak(self, passed: int, top: float) -> None:
        """Take in the highest equity `top` of `passed` quiet bars (a scan's answer): the peaks :meth:`quiet` keeps."""
        if passed:
            self.peak_equity = max(self.peak_equity, top)  # type: ignore[type-var]
            self.drawdown_peak = max(self.drawdown_peak, top)  # type: ignore[type-var]

    def _day_of(self, t: float) -> str:
        """The UTC day of `t` ('YYYY-MM-DD'), with the day's bounds kept for :meth:`quiet`."""
        if not self._day_lo <= t < self._day_hi:
            self._day_lo = t - t % 86400.0
            self._day_hi = self._day_lo + 86400.0
            self._day_name = _utc_day(t)
        return self._day_name

    def can_open(self, now: float | datetime) -> tuple[bool, str]:
        """Whether new exposure may be taken at `now`, and if not, why and until when."""
        if not self.breaches:
            return True, ""
        t = as_seconds(now)
        parts = [b["reason"] for b in self.breaches.values()]
        wait = self._retry_at() - t
        hint = " and ".join(self._resume_rule(r) for r in self.breaches)
        cooldown = f", not before the {self.limits.cooldown_seconds:g} s cooldown ends in {wait:.0f} s" if wait > 0 else ""
        return False, f"Paused by risk: {' '.join(parts)} Trading resumes {hint}{cooldown}, or on a manual resume."

    def resume(self, now: float | datetime, view: PortfolioView | None = None, by: str = "user") -> RiskEvent:
        """Manual resume: lift every pause now and re-arm each breached limit from the current equity.

        With `view`, the limits are re-armed from its equity at once; without
        it, from the equity at the next :meth:`update`.
        """
        t = as_seconds(now)
        rules = list(self.breaches)
        self.breaches.clear()
        self.paused_at = None
        if view is not None and finite_number(view.equity):
            for rule in rules:
                if rule == "daily_loss":
                    self.loss_reference = view.equity
                else:
                    self.drawdown_peak = view.equity
        else:
            self.rearm = sorted(set(self.rearm) | set(rules))
        if not rules:
            return RiskEvent("resumed", f"Manual resume by {by}: no risk pause was active.", {"rules": [], "manual": True, "by": by}, t)
        names = " and ".join(r.replace("_", " ") + " limit" for r in rules)
        return RiskEvent("resumed", f"Manual resume by {by}: the {names} re-armed from the current equity.",
                         {"rules": rules, "manual": True, "by": by}, t)

    reset = resume  # the name the engine's resume command calls

    def measures(self, equity: float) -> dict[str, float]:
        """Today's loss (fraction of the day's start) and drawdown (fraction of the peak) at `equity`."""
        day_loss = 0.0
        if positive_number(self.day_start_equity) and self.loss_reference is not None:
            day_loss = max(0.0, (self.loss_reference - equity) / self.day_start_equity)
        drawdown = 0.0
        if positive_number(self.drawdown_peak):
            drawdown = max(0.0, (self.drawdown_peak - equity) / self.drawdown_peak)
        return {"daily_loss": day_loss, "drawdown": drawdown}

    # -- persistence ----------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything needed to continue after a restart, as plain JSON values."""
        return {
            "version": STATE_VERSION, "day": self.day, "day_start_equity": self.day_start_equity,
            "peak_equity": self.peak_equity, "loss_reference": self.loss_reference, "drawdown_peak": self.drawdown_peak,
            "breaches": {k: dict(v) for k, v in self.breaches.items()}, "paused_at": self.paused_at, "rearm": list(self.rearm),
        }

    @classmethod
    def from_state(cls, limits: RiskLimits, state: Mapping[str, Any] | None) -> RiskGuard:
        """A guard continuing from :meth:`state`; an empty state is a fresh guard."""
        guard = cls(limits)
        if not state:
            return guard
        try:
            if state.get("version", STATE_VERSION) != STATE_VERSION:
                raise ValueError(f"version {state.get('version')!r}, expected {STATE_VERSION}")
            guard.day = None if state.get("day") is None else str(state["day"])
            for name in ("day_start_equity", "peak_equity", "loss_reference", "drawdown_peak", "paused_at"):
                v = state.get(name)
                setattr(guard, name, None if v is None else float(v))
            breaches = dict(state.get("breaches") or {})
            unknown = set(breaches) - set(_RULES)
            if unknown:
                raise ValueError(f"unknown rules {sorted(unknown)}")
            guard.breaches = {k: dict(v) for k, v in breaches.items()}
            guard.rearm = [r for r in state.get("rearm") or [] if r in _RULES]
        except (TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"Stored risk state is unreadable ({exc}); clear the deployment's risk_state to start the guard afresh.") from exc
        return guard

    # -- wording and rules ------------------------------------------------------
    def _limit(self, rule: str) -> float | None:
        return self.limits.daily_loss_limit if rule == "daily_loss" else self.limits.drawdown_limit

    def _reference(self, rule: str) -> float | None:
        return self.loss_reference if rule == "daily_loss" else self.drawdown_peak

    def _retry_at(self) -> float:
        return (self.paused_at or 0.0) + (self.limits.cooldown_seconds or 0.0)

    def _cleared(self, rule: str, value: float, day: str) -> bool:
        limit = self._limit(rule)
        if limit is None:
            return True  # the rule was switched off
        if rule == "daily_loss":
            return day != self.breaches[rule].get("day")
        return value <= limit * RECOVERY * (1 + TOL)

    def _breach_reason(self, rule: str, value: float, limit: float, equity: float) -> str:
        if rule == "daily_loss":
            since = (f"the day's start ({self.day} UTC)" if self.loss_reference == self.day_start_equity
                     else "the last manual resume")
            return (f"Daily loss {value:.2%} reached the daily_loss_limit {limit:.2%} "
                    f"(equity {equity:,.2f} against {self.loss_reference:,.2f} at {since}).")
        return (f"Drawdown {value:.2%} reached the drawdown_limit {limit:.2%} "
                f"(equity {equity:,.2f} against a peak of {self.drawdown_peak:,.2f}).")

    def _resume_rule(self, rule: str) -> str:
        if rule == "daily_loss":
            return "at the next UTC day"
        limit = self._limit(rule) or 0.0
        return f"when the drawdown recovers to {limit * RECOVERY:.2%}"

    def _clear_reason(self, rule: str, value: float) -> str:
        if self._limit(rule) is None:
            return f"the {rule.replace('_', ' ')} limit was switched off"
        if rule == "daily_loss":
            return f"a new UTC day ({self.day}) started"
        return f"the drawdown recovered to {value:.2%}"


def _utc_day(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d")
