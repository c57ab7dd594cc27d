"""Data access for workbench.sync's tables (store migration 2) and the few store writes corrections need."""
from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pandas as pd
from sqlalchemy import insert, select, update

from ..store import Store, _jsonable
from ..store import schema as t
from ..store import sync_schema as ss
from .model import Difference


def record_run(store: Store, venue_id: str, deployment_id: str | None, since_ms: int | None, compared: Mapping[str, Any],
               diffs: list[Difference], applied: Mapping[int, str], seconds: float, status: str = "ok",
               error: str | None = None, at: float | None = None) -> int:
    """Store one reconciliation run with its differences; `applied` maps a difference's index to its result."""
    now = at if at is not None else time.time()
    with store.tx() as conn:
        run_id = int(conn.execute(insert(ss.sync_runs).values(
            at=now, venue_id=venue_id, deployment_id=deployment_id, since_ms=since_ms, compared=_jsonable(dict(compared)),
            differences=len(diffs), applied=sum(1 for r in applied.values() if not r.startswith("failed")),
            status=status, error=error, seconds=seconds)).inserted_primary_key[0])
        if diffs:
            conn.execute(insert(ss.sync_differences), [
                {"run_id": run_id, "at": now, "venue_id": venue_id, "deployment_id": d.deployment_id, "kind": d.kind,
                 "symbol": d.symbol, "key": d.key[:120], "detail": d.detail, "evidence": _jsonable(dict(d.evidence)),
                 "correction": _jsonable(d.correction.to_dict()) if d.correction else None,
                 "applied": i in applied and not applied[i].startswith("failed"), "result": applied.get(i)}
                for i, d in enumerate(diffs)])
    return run_id


def runs(store: Store, venue_id: str | None = None) -> pd.DataFrame:
    return store.frame("sync_runs", **({"venue_id": venue_id} if venue_id else {}))


def differences(store: Store, run_id: int | None = None) -> pd.DataFrame:
    return store.frame("sync_differences", **({"run_id": run_id} if run_id is not None else {}))


def cursor(store: Store, venue_id: str) -> tuple[int, str | None] | None:
    with store.tx() as conn:
        row = conn.execute(select(ss.sync_cursors).where(ss.sync_cursors.c.venue_id == venue_id)).first()
    return (int(row.last_trade_ms), row.last_trade_id) if row else None


def save_cursor(store: Store, venue_id: str, last_ms: int, last_id: str | None) -> None:
    now = time.time()
    with store.tx() as conn:
        done = conn.execute(update(ss.sync_cursors).where(ss.sync_cursors.c.venue_id == venue_id)
                            .values(last_trade_ms=last_ms, last_trade_id=last_id, updated_at=now)).rowcount
        if not done:
            conn.execute(insert(ss.sync_cursors).values(venue_id=venue_id, last_trade_ms=last_ms, last_trade_id=last_id, updated_at=now))


def ignored(store: Store, venue_id: str) -> pd.DataFrame:
    return store.frame("sync_ignored", venue_id=venue_id)


def add_ignored(store: Store, venue_id: str, symbol: str, amount: float, reason: str) -> None:
    with store.tx() as conn:
        conn.execute(insert(ss.sync_ignored).values(venue_id=venue_id, symbol=symbol, amount=float(amount), at=time.time(), reason=reason))


def update_fill(store: Store, venue_id: str, venue_trade_id: str, **fields: Any) -> int:
    """Correct a recorded fill with the venue's numbers; returns rows changed."""
    with store.tx() as conn:
        return int(conn.execute(update(t.fills).where(t.fills.c.venue == venue_id, t.fills.c.venue_trade_id == venue_trade_id)
                                .values(**fields)).rowcount)


def position(store: Store, position_id: int) -> dict[str, Any] | None:
    with store.tx() as conn:
        row = conn.execute(select(t.positions).where(t.positions.c.id == position_id)).first()
    return dict(row._mapping) if row else None


# -- learning records -----------------------------------------------------------
def add_learning_record(store: Store, row: Mapping[str, Any]) -> int | None:
    """Insert a learning record (one per position); None if that position already has one."""
    now = time.time()
    with store.tx() as conn:
        if conn.execute(select(ss.learning_records.c.id).where(ss.learning_records.c.position_id == row["position_id"])).first():
            return None
        values = {"created_at": now, "updated_at": now, **_jsonable(dict(row))}
        return int(conn.execute(insert(ss.learning_records).values(**values)).inserted_primary_key[0])


def update_learning_record(store: Store, record_id: int, **fields: Any) -> None:
    fields["updated_at"] = time.time()
    with store.tx() as conn:
        conn.execute(update(ss.learning_records).where(ss.learning_records.c.id == record_id).values(**_jsonable(fields)))


def learning_rows(store: Store, status: str | None = None) -> list[dict[str, Any]]:
    stmt = select(ss.learning_records).order_by(ss.learning_records.c.id)
    if status is not None:
        stmt = stmt.where(ss.learning_records.c.cf_status == status)
    with store.tx() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt)]
