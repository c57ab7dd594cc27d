"""Tables of workbench.sync (store migration 2): reconciliation runs, differences, cursors, learning records."""
from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Float, Integer, String, Table, Text

from .schema import metadata

sync_runs = Table(  # one row per reconciliation: when, what was compared, what was found and applied
    "sync_runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("venue_id", String(80), nullable=False, index=True),
    Column("deployment_id", String(40)),
    Column("since_ms", Integer),
    Column("compared", JSON, nullable=False),
    Column("differences", Integer, nullable=False),
    Column("applied", Integer, nullable=False),
    Column("status", String(8), nullable=False),  # ok | error
    Column("error", Text),
    Column("seconds", Float, nullable=False),
)

sync_differences = Table(
    "sync_differences", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, nullable=False, index=True),
    Column("at", Float, nullable=False),
    Column("venue_id", String(80), nullable=False),
    Column("deployment_id", String(40)),
    Column("kind", String(32), nullable=False),
    Column("symbol", String(40)),
    Column("key", String(120), nullable=False),
    Column("detail", Text, nullable=False),
    Column("evidence", JSON, nullable=False),
    Column("correction", JSON),
    Column("applied", Boolean, nullable=False, default=False),
    Column("result", Text),
)

sync_cursors = Table(  # incremental sync: the newest venue trade seen per venue
    "sync_cursors", metadata,
    Column("venue_id", String(80), primary_key=True),
    Column("last_trade_ms", Integer, nullable=False),
    Column("last_trade_id", String(64)),
    Column("updated_at", Float, nullable=False),
)

sync_ignored = Table(  # venue holdings the user chose to ignore (not ours): subtracted before diffing positions
    "sync_ignored", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("venue_id", String(80), nullable=False, index=True),
    Column("symbol", String(40), nullable=False),
    Column("amount", Float, nullable=False),  # signed: + long / held, - short
    Column("at", Float, nullable=False),
    Column("reason", Text),
)

learning_records = Table(  # seed 004: every manual intervention, with what the strategy would have done
    "learning_records", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("position_id", Integer, nullable=False, unique=True),
    Column("deployment_id", String(40), nullable=False, index=True),
    Column("symbol", String(40), nullable=False),
    Column("strategy", String(120)),
    Column("params", JSON, nullable=False),
    Column("timeframe", String(8)),
    Column("side", String(5), nullable=False),
    Column("amount", Float, nullable=False),
    Column("confidence", Float),
    Column("entry_price", Float, nullable=False),
    Column("entry_at", Float, nullable=False),
    Column("exit_price", Float, nullable=False),
    Column("exit_at", Float, nullable=False),
    Column("duration_s", Float, nullable=False),
    Column("pnl", Float, nullable=False),
    Column("sl_price", Float),
    Column("tp_price", Float),
    Column("cf_status", String(12), nullable=False),  # pending | resolved | unavailable
    Column("cf_reason", String(16)),
    Column("cf_exit_price", Float),
    Column("cf_exit_at", Float),
    Column("cf_pnl", Float),
    Column("cf_note", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

SYNC_TABLES = (sync_runs, sync_differences, sync_cursors, sync_ignored, learning_records)
