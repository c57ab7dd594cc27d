"""Tables of the store (SQLAlchemy Core). Changes go through migrations, never edits."""
from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

schema_version = Table(
    "schema_version", metadata,
    Column("version", Integer, nullable=False),
    Column("applied_at", Float, nullable=False),
)

accounts = Table(  # references only: secrets live in the encrypted account store
    "accounts", metadata,
    Column("name", String(64), primary_key=True),
    Column("exchange", String(32), nullable=False),
    Column("mode", String(8), nullable=False),
    Column("created_at", Float, nullable=False),
)

deployments = Table(
    "deployments", metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(120), nullable=False),
    Column("strategy", String(120), nullable=False),
    Column("params", JSON, nullable=False),
    Column("symbols", JSON, nullable=False),
    Column("timeframe", String(8), nullable=False),
    Column("venue", String(32), nullable=False),
    Column("account", String(64)),
    Column("mode", String(8), nullable=False),
    Column("risk", JSON, nullable=False),
    Column("config", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("status_reason", Text),
    Column("cursor", JSON, nullable=False, default=dict),
    Column("risk_state", JSON, nullable=False, default=dict),
    Column("params_freshness", String(16)),
    Column("params_optimized_at", String(40)),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("stopped_at", Float),
    Column("updated_at", Float, nullable=False),
)

status_changes = Table(
    "status_changes", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment_id", String(40), nullable=False, index=True),
    Column("at", Float, nullable=False),
    Column("old", String(16)),
    Column("new", String(16), nullable=False),
    Column("reason", Text),
)

orders = Table(
    "orders", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment_id", String(40), index=True),
    Column("client_order_id", String(64), nullable=False, unique=True),
    Column("venue_order_id", String(64), index=True),
    Column("symbol", String(40), nullable=False),
    Column("side", String(4), nullable=False),
    Column("type", String(16), nullable=False),
    Column("amount", Float, nullable=False),
    Column("price", Float),
    Column("trigger_price", Float),
    Column("reduce_only", Boolean, nullable=False, default=False),
    Column("purpose", String(16), nullable=False),
    Column("position_id", Integer),
    Column("status", String(16), nullable=False),
    Column("filled", Float, nullable=False, default=0.0),
    Column("avg_price", Float),
    Column("error", Text),
    Column("status_history", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

fills = Table(
    "fills", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment_id", String(40), index=True),
    Column("venue", String(32), nullable=False),
    Column("venue_trade_id", String(64), nullable=False),
    Column("venue_order_id", String(64)),
    Column("client_order_id", String(64), index=True),
    Column("symbol", String(40), nullable=False),
    Column("side", String(4), nullable=False),
    Column("amount", Float, nullable=False),
    Column("price", Float, nullable=False),
    Column("fee", Float, nullable=False),
    Column("fee_currency", String(16)),
    Column("at", Float, nullable=False),
    Column("external", Boolean, nullable=False, default=False),
    UniqueConstraint("venue", "venue_trade_id", name="uq_fill_venue_trade"),
)

positions = Table(
    "positions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment_id", String(40), nullable=False),
    Column("symbol", String(40), nullable=False),
    Column("side", String(5), nullable=False),
    Column("amount", Float, nullable=False),
    Column("entry_price", Float, nullable=False),
    Column("entry_at", Float, nullable=False),
    Column("entry_fee", Float, nullable=False, default=0.0),
    Column("confidence", Float),
    Column("sl_price", Float),
    Column("tp_price", Float),
    Column("leverage", Float, nullable=False, default=1.0),
    Column("status", String(8), nullable=False),
    Column("closed_at", Float),
    Index("ix_positions_open", "deployment_id", "status"),
)

trades = Table(  # closed trades
    "trades", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment_id", String(40), nullable=False, index=True),
    Column("position_id", Integer, nullable=False, unique=True),
    Column("symbol", String(40), nullable=False),
    Column("side", String(5), nullable=False),
    Column("amount", Float, nullable=False),
    Column("entry_price", Float, nullable=False),
    Column("entry_at", Float, nullable=False),
    Column("exit_price", Float, nullable=False),
    Column("exit_at", Float, nullable=False),
    Column("fees", Float, nullable=False),
    Column("pnl", Float, nullable=False),
    Column("pnl_pct", Float, nullable=False),
    Column("exit_reason", String(16), nullable=False),
)

equity = Table(
    "equity", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment_id", String(40), nullable=False),
    Column("at", Float, nullable=False),
    Column("equity", Float, nullable=False),
    Column("cash", Float, nullable=False),
    Column("unrealized", Float, nullable=False),
    Index("ix_equity_dep_at", "deployment_id", "at"),
)

#: equity rows in blocks, one per flush: (at, equity, cash, unrealized) float64 little-endian, row after row.
#: Replaces per-row `equity` inserts (v3): a replay writes 100,000 rows as ~100 blocks; `equity` keeps older rows.
equity_blocks = Table(
    "equity_blocks", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment_id", String(40), nullable=False),
    Column("first_at", Float, nullable=False),
    Column("last_at", Float, nullable=False),
    Column("rows", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Index("ix_equity_blocks_dep", "deployment_id", "id"),
)

risk_events = Table(
    "risk_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment_id", String(40), index=True),
    Column("at", Float, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("symbol", String(40)),
    Column("reason", Text, nullable=False),
    Column("details", JSON, nullable=False),
)

audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(120)),
    Column("params", JSON, nullable=False),
)

commands = Table(
    "commands", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", Float, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("command", String(32), nullable=False),
    Column("deployment_id", String(40)),
    Column("args", JSON, nullable=False),
    Column("status", String(12), nullable=False),
    Column("result", Text),
    Column("handled_at", Float),
    Index("ix_commands_status", "status"),
)

venue_state = Table(
    "venue_state", metadata,
    Column("venue_id", String(80), primary_key=True),
    Column("state", JSON, nullable=False),
    Column("updated_at", Float, nullable=False),
)

engine_heartbeat = Table(
    "engine_heartbeat", metadata,
    Column("engine_id", String(40), primary_key=True),
    Column("pid", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("beat_at", Float, nullable=False),
)
