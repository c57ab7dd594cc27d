"""Schema migrations: an ordered list; each brings the store up one version."""
from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import Connection, func, insert, inspect, select

from . import schema as s
from . import sync_schema

_V1_TABLES = (
    s.accounts, s.deployments, s.status_changes, s.orders, s.fills, s.positions, s.trades,
    s.equity, s.risk_events, s.audit, s.commands, s.venue_state, s.engine_heartbeat,
)


def _v1(conn: Connection) -> None:
    for table in _V1_TABLES:
        table.create(conn, checkfirst=True)


def _v2(conn: Connection) -> None:
    """workbench.sync: reconciliation runs, differences, cursors, ignored holdings, learning records."""
    for table in sync_schema.SYNC_TABLES:
        table.create(conn, checkfirst=True)


def _v3(conn: Connection) -> None:
    """Equity rows written in blocks (``equity_blocks``); the ``equity`` table keeps the rows written before."""
    s.equity_blocks.create(conn, checkfirst=True)


#: (version, migration); append new ones, never edit old ones
MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [(1, _v1), (2, _v2), (3, _v3)]
LATEST = MIGRATIONS[-1][0]


def current_version(conn: Connection) -> int:
    if not inspect(conn).has_table("schema_version"):
        return 0
    return int(conn.execute(select(func.max(s.schema_version.c.version))).scalar() or 0)


def migrate(conn: Connection) -> int:
    """Apply the missing migrations inside `conn`'s transaction; return the new version."""
    s.schema_version.create(conn, checkfirst=True)
    version = current_version(conn)
    for number, step in MIGRATIONS:
        if number > version:
            step(conn)
            conn.execute(insert(s.schema_version).values(version=number, applied_at=time.time()))
            version = number
    return version
