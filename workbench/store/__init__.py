"""The store: every order, fill, trade, status change and audit event.

SQLAlchemy Core on a SQLite file by default (WAL mode), or any URL such as
``postgresql+psycopg://...`` through the same code. ``Store(":memory:")`` is
for tests. The schema is versioned (:mod:`workbench.store.migrations`).
Engines, panels and the CLI share one store; commands placed in it by any
client reach a running engine.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from sqlalchemy import Connection, create_engine, delete, event, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.pool import StaticPool

from ..errors import StoreError
from . import schema as t
from .migrations import LATEST, migrate
from .raw import TableSql, json_text

DEPLOYMENT_STATUSES = ("active", "paused", "stopped", "error")
EXIT_REASONS = ("signal", "stop_loss", "take_profit", "manual", "emergency_stop", "risk", "stop")
COMMANDS = ("deploy", "stop", "pause", "resume", "emergency_stop", "close_position", "place_order", "cancel_order", "enable_symbol", "disable_symbol")


def _url(target: str | Path) -> str:
    text = str(target)
    if "://" in text:
        return text
    if text == ":memory:":
        return "sqlite://"
    Path(text).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(text).expanduser()}"


#: the columns of :meth:`Store.equity`
EQUITY_COLUMNS = ("deployment_id", "at", "equity", "cash", "unrealized")


class Store:
    """Access to the store's tables; every write is its own transaction unless inside :meth:`tx`."""

    def __init__(self, target: str | Path = ".workbench/workbench.sqlite", echo: bool = False) -> None:
        self.url = _url(target)
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.url == "sqlite://":
            kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
        elif self.url.startswith("sqlite"):
            kwargs.update(connect_args={"timeout": 10, "check_same_thread": False})
        self.engine = create_engine(self.url, **kwargs)
        if self.url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._local = _TxState()
        dialect = self.engine.dialect
        self._sqlite = self.url.startswith("sqlite")
        returning = not self._sqlite
        self._sql = {name: TableSql(tbl, dialect.paramstyle, returning) for name, tbl in t.metadata.tables.items()}
        self._dbapi_error: type[BaseException] = getattr(dialect.dbapi, "Error", Exception) if dialect.dbapi else Exception
        try:
            with self.engine.begin() as conn:
                version = migrate(conn)
        except DBAPIError as exc:
            raise StoreError(_explain(exc, self.url)) from None
        if version != LATEST:
            raise StoreError(f"Store {self.url} is at schema {version}, expected {LATEST}.")

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        self.engine.dispose()

    # -- transactions -------------------------------------------------------
    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """Group several writes into one atomic transaction (nested calls and :meth:`batch` join it)."""
        self._drain()  # a statement sees every row written before it, deferred ones included
        with self._tx() as conn:
            yield conn

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        loc = self._local
        conn = loc.conn
        if conn is not None:
            yield conn
            return
        if loc.batch:
            yield self._begin_batch()
            return
        try:
            with self.engine.begin() as conn:
                loc.conn = conn
                try:
                    yield conn
                finally:
                    loc.conn = None
        except IntegrityError:
            raise
        except DBAPIError as exc:
            raise StoreError(_explain(exc, self.url)) from None

    def batch(self) -> _Batch:
        """Writes inside commit together at the end: one transaction, begun lazily at the first write.

        The engine runs each bar in a batch, so a bar that trades costs one commit
        and an idle bar none; a crash mid-bar leaves the store as it was before
        the bar (the paper venue's state lives in the same transaction).
        :meth:`commit_now` makes the writes so far durable (the write-ahead of an
        order bound for a real venue). Nested batches and transactions join.

        Rows written with ``defer=True`` inside a batch (the engine's orders,
        fills, trades and position closes) wait in memory and go in with one
        statement per table: when the batch commits, and before any statement that could see
        them (any read, any other write to their table). So they are never
        missing from a read, and a crash loses them only with the rest of the
        batch.
        """
        return _Batch(self)

    def commit_now(self) -> None:
        """Inside :meth:`batch`: commit what was written so far (the batch goes on). Elsewhere: nothing to do."""
        loc = self._local
        if loc.batch and (loc.conn is not None or loc.pending):
            self._end_batch(commit=True)

    def before_commit(self, key: str, fn: Callable[[], None]) -> None:
        """Inside :meth:`batch`: call `fn` once (per `key`) just before the batch commits. Elsewhere: call it now.

        The paper venue saves its state this way: once per bar, in the bar's transaction.
        """
        loc = self._local
        if loc.batch:
            if loc.hooks is None:
                loc.hooks = {}
            loc.hooks[key] = fn
        else:
            fn()

    def _run_hooks(self) -> None:
        loc = self._local
        while loc.hooks:
            hooks, loc.hooks = loc.hooks, None
            for fn in hooks.values():
                fn()

    def _begin_batch(self) -> Connection:
        loc = self._local
        try:
            conn = self.engine.connect()
            loc.trans = conn.begin()
        except DBAPIError as exc:
            raise StoreError(_explain(exc, self.url)) from None
        loc.conn = conn
        return conn

    def _end_batch(self, commit: bool) -> None:
        loc = self._local
        if commit:
            try:
                self._run_hooks()  # the paper venue's state, then the deferred rows, go in before the commit
                self._drain()
            except BaseException:
                self._end_batch(commit=False)
                raise
        else:
            loc.hooks = loc.pending = None
        conn, trans = loc.conn, loc.trans
        loc.conn = loc.trans = loc.next_position_id = None
        if conn is None:
            return
        try:
            if commit:
                trans.commit()
            else:
                trans.rollback()
        except DBAPIError as exc:
            raise StoreError(_explain(exc, self.url)) from None
        finally:
            conn.close()

    def _raw(self, sql: str, params: Any, many: bool = False,
             fetch: bool = False, table: str | None = None) -> _Outcome:
        """Run one statement on the DBAPI cursor of the current transaction (see :mod:`.raw`).

        `table`: the statement writes only that table, so only its deferred rows go in first (else all do).

        Rows (with `fetch`), the row count and the last row id are read before the
        transaction ends, so the connection is never used after it went back to the pool.
        """
        self._drain(table)
        with self._tx() as conn:
            cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                if many:
                    cur.executemany(sql, params)
                else:
                    cur.execute(sql, params)
                rows = cur.fetchall() if fetch else []
            except self._dbapi_error as exc:  # type: ignore[misc]
                raise StoreError(_explain_text(str(exc), self.url)) from None
            return _Outcome(rows, cur.rowcount, getattr(cur, "lastrowid", None))  # PostgreSQL: RETURNING gives ids

    def _insert(self, table: str, row: Mapping[str, Any], conflict: Sequence[str] | None = None) -> int | None:
        """Insert one row; its id (None when `conflict` columns matched an existing row)."""
        sql = self._sql[table]
        params = sql.params(row)
        out = self._raw(sql.insert(tuple(params), conflict), params, fetch=sql.returning, table=table)
        if out.rowcount == 0:
            return None
        if sql.returning:
            return int(out.rows[0][0]) if out.rows else None
        return int(out.lastrowid)

    def _update(self, table: str, where: str, key: Any, fields: Mapping[str, Any]) -> int:
        sql = self._sql[table]
        params = sql.params(fields, with_defaults=False)
        stmt = sql.update(tuple(params), where)
        params["_where"] = key
        return int(self._raw(stmt, params, table=table).rowcount)

    # -- deferred rows ------------------------------------------------------------
    def _defer(self, table: str, key: Any, row: dict[str, Any]) -> bool:
        """Inside a batch, keep `row` to be inserted later (see :meth:`batch`); False outside one (insert it now)."""
        loc = self._local
        if not loc.batch:
            return False
        if loc.pending is None:
            loc.pending = {}
        rows = loc.pending.setdefault(table, {})
        if key in rows:
            raise StoreError(f"A {table} row {key!r} is already recorded in this transaction; nothing was changed.")
        rows[key] = row
        return True

    def _pending(self, table: str, key: Any) -> dict[str, Any] | None:
        pending = self._local.pending
        return pending.get(table, {}).get(key) if pending else None

    def _drain(self, table: str | None = None) -> None:
        """Write the deferred rows (of `table`, or all): one statement per table, in the order they were written."""
        loc = self._local
        if not loc.pending:
            return
        for name in list(loc.pending) if table is None else [n for n in loc.pending if n.split(":")[0] == table]:
            rows = loc.pending.pop(name, None) if loc.pending else None  # None: a statement below wrote them first
            if rows is None:
                continue
            if name == _CLOSE_POSITION:  # positions closed in this batch: one UPDATE for all
                sql = self._sql["positions"]
                self._raw(sql.update(_CLOSING, "id", key="id"), list(rows.values()), many=True, table="positions")
                continue
            sql = self._sql[name]
            keys = tuple(c for c in sql.columns if c != "id" or name in _DEFER_WITH_ID)
            values = sql.values(keys, rows.values())  # defaults as an immediate insert fills them
            self._raw(sql.insert_rows(keys, _DEFER_CONFLICT.get(name)), values, many=True, table=name)
        if not loc.pending:
            loc.pending = None

    def _select(self, table: str, where: str, key: Any) -> list[dict[str, Any]]:
        sql = self._sql[table]
        out = self._raw(f"{sql.select_all} WHERE {where} = {sql.ph('_where')}", {"_where": key}, fetch=True)
        return [sql.decode(r) for r in out.rows]

    def _exec(self, stmt: Any, params: Any = None) -> Any:
        with self.tx() as conn:
            return conn.execute(stmt, params) if params is not None else conn.execute(stmt)

    def _rows(self, stmt: Any) -> list[dict[str, Any]]:
        with self.tx() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    def frame(self, table: str, columns: Sequence[str] | None = None, **where: Any) -> pd.DataFrame:
        """A table (optionally only some `columns`, filtered by equality) as a DataFrame."""
        tbl = t.metadata.tables[table]
        sql = self._sql[table]
        columns = list(columns) if columns is not None else sql.columns
        for key in [*where, *columns]:
            if key not in tbl.c:
                raise StoreError(f"Table {table} has no column {key!r}; columns: {', '.join(sql.columns)}.")
        cond = " AND ".join(f"{k} = {sql.ph('w_' + k)}" for k in where)
        order = ", ".join(c.name for c in tbl.primary_key.columns)
        stmt = f"SELECT {', '.join(columns)} FROM {table}" + (f" WHERE {cond}" if cond else "") + f" ORDER BY {order}"
        rows = self._raw(stmt, {f"w_{k}": v for k, v in where.items()}, fetch=True).rows
        df = pd.DataFrame.from_records(rows, columns=columns)
        for name in sql.json.intersection(columns):
            df[name] = [json.loads(v) if isinstance(v, str) else v for v in df[name]]
        for name in sql.bools.intersection(columns):
            df[name] = [None if v is None else bool(v) for v in df[name]]
        return df

    # -- audit ----------------------------------------------------------------
    def audit(self, actor: str, action: str, target: str | None = None, params: Mapping[str, Any] | None = None, at: float | None = None) -> None:
        """Record who did what to which target with which parameters."""
        self._insert("audit", {"at": at or time.time(), "actor": actor, "action": action, "target": target, "params": params or {}})

    # -- deployments ------------------------------------------------------------
    def insert_deployment(self, row: Mapping[str, Any]) -> None:
        self._exec(insert(t.deployments).values(**row))

    def update_deployment(self, dep_id: str, **fields: Any) -> None:
        fields.setdefault("updated_at", time.time())
        self._update("deployments", "id", dep_id, fields)

    def set_status(self, dep_id: str, status: str, reason: str | None = None, at: float | None = None) -> None:
        """Change a deployment's status and record the change."""
        if status not in DEPLOYMENT_STATUSES:
            raise StoreError(f"Unknown deployment status {status!r}.")
        now = at or time.time()
        with self.tx() as conn:
            old = conn.execute(select(t.deployments.c.status).where(t.deployments.c.id == dep_id)).scalar()
            values: dict[str, Any] = {"status": status, "status_reason": reason, "updated_at": now}
            if status == "stopped":
                values["stopped_at"] = now
            if status == "active" and old != "paused":
                values["started_at"] = now
            conn.execute(update(t.deployments).where(t.deployments.c.id == dep_id).values(**values))
            conn.execute(insert(t.status_changes).values(deployment_id=dep_id, at=now, old=old, new=status, reason=reason))

    def deployment(self, dep_id: str) -> dict[str, Any] | None:
        rows = self._rows(select(t.deployments).where(t.deployments.c.id == dep_id))
        return rows[0] if rows else None

    def deployments(self, status: Iterable[str] | None = None) -> list[dict[str, Any]]:
        stmt = select(t.deployments).order_by(t.deployments.c.created_at)
        if status is not None:
            stmt = stmt.where(t.deployments.c.status.in_(list(status)))
        return self._rows(stmt)

    # -- orders and fills -----------------------------------------------------
    def insert_order(self, row: Mapping[str, Any], defer: bool = False) -> int | None:
        """Record a new order; its id (None when `defer` kept it for later inside a batch, see :meth:`batch`)."""
        now = row.get("created_at") or time.time()
        values = {"status_history": [[now, row.get("status", "pending")]], "filled": 0.0, "created_at": now, "updated_at": now, **row}
        if defer and self._defer("orders", values["client_order_id"], values):
            return None
        new_id = self._insert("orders", values, conflict=("client_order_id",))
        if new_id is None:
            raise StoreError(f"An order with client id {row.get('client_order_id')!r} is already recorded.")
        return new_id

    def update_order(self, client_order_id: str, status: str | None = None, at: float | None = None, **fields: Any) -> None:
        """Update an order; a new status is appended to its status history."""
        now = at or time.time()
        row = self._pending("orders", client_order_id)
        if row is not None:  # not written yet: the update joins the row
            if status is not None:
                history = row["status_history"]
                if not history or history[-1][1] != status:
                    history.append([now, status])
                fields["status"] = status
            row.update(fields, updated_at=now)
            return
        if status is not None and self._sqlite:  # one statement: SQLite appends to the JSON history itself
            sql = self._sql["orders"]
            params = sql.params({**fields, "status": status, "updated_at": now}, with_defaults=False)
            sets = ", ".join(f"{k} = {sql.ph(k)}" for k in params)
            params.update(_where=client_order_id, _pair=json_text([now, status]))
            self._raw(f"UPDATE orders SET {sets}, status_history = CASE WHEN json_extract(status_history, '$[#-1][1]') = "
                      f"{sql.ph('status')} THEN status_history ELSE json_insert(status_history, '$[#]', json({sql.ph('_pair')})) END "
                      f"WHERE client_order_id = {sql.ph('_where')}", params)
            return
        with self.tx():
            if status is not None:
                rows = self._raw("SELECT status_history FROM orders WHERE client_order_id = " + self._sql["orders"].ph("c"),
                                 {"c": client_order_id}, fetch=True).rows
                found = rows[0] if rows else None
                stored = found[0] if found else None
                history = list(json.loads(stored) if isinstance(stored, str) else stored or [])  # PostgreSQL returns JSON parsed
                if not history or history[-1][1] != status:
                    history.append([now, status])
                fields.update(status=status, status_history=history)
            fields["updated_at"] = now
            self._update("orders", "client_order_id", client_order_id, fields)

    def order(self, client_order_id: str) -> dict[str, Any] | None:
        rows = self._select("orders", "client_order_id", client_order_id)
        return rows[0] if rows else None

    def orders(self, deployment_id: str | None = None, statuses: Iterable[str] | None = None) -> list[dict[str, Any]]:
        stmt = select(t.orders).order_by(t.orders.c.id)
        if deployment_id is not None:
            stmt = stmt.where(t.orders.c.deployment_id == deployment_id)
        if statuses is not None:
            stmt = stmt.where(t.orders.c.status.in_(list(statuses)))
        return self._rows(stmt)

    def insert_fill(self, row: Mapping[str, Any], defer: bool = False) -> bool | None:
        """Record a fill; False (and nothing written) if the venue trade id is already known.

        `defer`: inside a batch the row goes in later (see :meth:`batch`; a known trade id is still ignored): None.
        """
        key = (row.get("venue"), row.get("venue_trade_id"))
        if defer and self._pending("fills", key) is not None:
            return False
        if defer and self._defer("fills", key, dict(row)):
            return None
        return self._insert("fills", row, conflict=("venue", "venue_trade_id")) is not None

    def fills(self, deployment_id: str | None = None) -> list[dict[str, Any]]:
        stmt = select(t.fills).order_by(t.fills.c.id)
        if deployment_id is not None:
            stmt = stmt.where(t.fills.c.deployment_id == deployment_id)
        return self._rows(stmt)

    # -- positions and trades -----------------------------------------------
    def open_position(self, row: Mapping[str, Any], defer: bool = False) -> int:
        """Record an open position; its id.

        `defer` (SQLite, inside a batch): the batch's first position is inserted
        now, which takes the database's write lock until the batch commits; so
        the next ids are this batch's to give, and later positions wait as
        deferred rows (see :meth:`batch`).
        """
        row = {"status": "open", **row}
        loc = self._local
        if defer and loc.next_position_id is not None and self._defer("positions", loc.next_position_id, row):
            position_id = loc.next_position_id
            row["id"] = position_id
            loc.next_position_id = position_id + 1
            return position_id
        position_id = int(self._insert("positions", row) or 0)
        if defer and loc.batch and loc.conn is not None and self._sqlite:
            loc.next_position_id = position_id + 1
        return position_id

    def update_position(self, position_id: int, **fields: Any) -> None:
        row = self._pending("positions", position_id)
        if row is not None:  # not written yet: the update joins the row
            row.update(fields)
            return
        self._update("positions", "id", position_id, fields)

    def positions(self, deployment_id: str | None = None, status: str | None = "open") -> list[dict[str, Any]]:
        stmt = select(t.positions).order_by(t.positions.c.id)
        if deployment_id is not None:
            stmt = stmt.where(t.positions.c.deployment_id == deployment_id)
        if status is not None:
            stmt = stmt.where(t.positions.c.status == status)
        return self._rows(stmt)

    def close_position(self, position_id: int, trade: Mapping[str, Any], defer: bool = False) -> None:
        """Mark a position closed and record its trade, atomically (`defer`: both wait as in :meth:`batch`)."""
        if trade["exit_reason"] not in EXIT_REASONS:
            raise StoreError(f"Unknown exit reason {trade['exit_reason']!r}.")
        closing = {"status": "closed", "closed_at": trade["exit_at"], "amount": trade["amount"]}
        row = {"position_id": position_id, **trade}
        if defer and self._defer("trades", position_id, row):
            opened = self._pending("positions", position_id)
            if opened is not None:  # opened in this batch: its row is written closed
                opened.update(closing)
            else:
                self._defer(_CLOSE_POSITION, position_id, {**closing, "id": position_id})
            return
        with self._tx():
            self._update("positions", "id", position_id, closing)
            self._insert("trades", row)

    def trades(self, deployment_id: str | None = None) -> pd.DataFrame:
        return self.frame("trades", **({"deployment_id": deployment_id} if deployment_id else {}))

    # -- equity, risk ---------------------------------------------------------
    def add_equity_rows(self, deployment_id: str, rows: Sequence[tuple[float, float, float, float]] | np.ndarray) -> None:
        """Equity rows of one deployment as (at, equity, cash, unrealized) tuples or an (n, 4) array, written as one block."""
        if len(rows) == 0:
            return
        if isinstance(rows, np.ndarray):
            if rows.ndim != 2 or rows.shape[1] != 4:
                raise StoreError(f"Equity rows are (at, equity, cash, unrealized): an array of them has shape (n, 4), got {rows.shape}.")
            data = np.ascontiguousarray(rows, dtype="<f8")
        else:
            bad = next((r for r in rows if len(r) != 4), None)
            if bad is not None:
                raise StoreError(f"Equity rows are (at, equity, cash, unrealized) tuples; got a row of {len(bad)} values: {tuple(bad)!r}.")
            data = np.fromiter(chain.from_iterable(rows), dtype="<f8", count=4 * len(rows)).reshape(-1, 4)  # ~2x np.asarray
        self._insert("equity_blocks", {"deployment_id": deployment_id, "first_at": float(data[0, 0]), "last_at": float(data[-1, 0]),
                                       "rows": len(data), "data": data.tobytes()})

    def equity(self, deployment_id: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """A deployment's equity rows in the order they were written (at, equity, cash, unrealized; or `columns`)."""
        names = list(columns) if columns is not None else list(EQUITY_COLUMNS)
        unknown = [c for c in names if c not in EQUITY_COLUMNS]
        if unknown:
            raise StoreError(f"Equity rows have no column {unknown[0]!r}; columns: {', '.join(EQUITY_COLUMNS)}.")
        values = [c for c in names if c != "deployment_id"] or ["at"]
        older = self.frame("equity", values, deployment_id=deployment_id)  # rows written before blocks (schema v3)
        sql = self._sql["equity_blocks"]
        blocks = self._raw(f"SELECT data FROM equity_blocks WHERE deployment_id = {sql.ph('d')} ORDER BY id", {"d": deployment_id}, fetch=True).rows
        parts = [older.to_numpy(dtype=np.float64)] if len(older) else []
        index = [EQUITY_COLUMNS.index(c) - 1 for c in values]
        parts += [np.frombuffer(bytes(b[0]), dtype="<f8").reshape(-1, 4)[:, index] for b in blocks]
        data = np.concatenate(parts) if parts else np.empty((0, len(values)))
        df = pd.DataFrame(data, columns=values)
        if "deployment_id" in names:
            df.insert(names.index("deployment_id"), "deployment_id", deployment_id)
        return df[names]

    def add_risk_event(self, deployment_id: str | None, kind: str, reason: str, details: Mapping[str, Any] | None = None, symbol: str | None = None, at: float | None = None) -> None:
        self._insert("risk_events", {"deployment_id": deployment_id, "at": at or time.time(), "kind": kind, "symbol": symbol, "reason": reason, "details": details or {}})

    # -- commands -----------------------------------------------------------
    def submit_command(self, command: str, deployment_id: str | None = None, args: Mapping[str, Any] | None = None, actor: str = "user") -> int:
        """Queue a command for whichever engine runs the deployment."""
        if command not in COMMANDS:
            raise StoreError(f"Unknown command {command!r}; known: {', '.join(COMMANDS)}.")
        now = time.time()
        with self.tx() as conn:
            cid = conn.execute(insert(t.commands).values(created_at=now, actor=actor, command=command, deployment_id=deployment_id, args=_jsonable(args or {}), status="pending")).inserted_primary_key[0]
            conn.execute(insert(t.audit).values(at=now, actor=actor, action=f"command:{command}", target=deployment_id, params=_jsonable(args or {})))
        return int(cid)

    def pending_commands(self) -> list[dict[str, Any]]:
        return self._rows(select(t.commands).where(t.commands.c.status == "pending").order_by(t.commands.c.id))

    def finish_command(self, command_id: int, status: str, result: str | None = None) -> None:
        self._exec(update(t.commands).where(t.commands.c.id == command_id).values(status=status, result=result, handled_at=time.time()))

    def command(self, command_id: int) -> dict[str, Any] | None:
        rows = self._rows(select(t.commands).where(t.commands.c.id == command_id))
        return rows[0] if rows else None

    # -- venue state ----------------------------------------------------------
    # A venue's state is one row (a full snapshot) plus, after it, incremental rows
    # '<venue_id>#head', '<venue_id>#o:<order id>', '<venue_id>#t:<trade id>' written
    # by save_venue_delta, so saving after each order costs the change, not the history.
    def save_venue_state(self, venue_id: str, state: Mapping[str, Any]) -> None:
        """Save a venue's full state (replacing its incremental rows)."""
        now = time.time()
        with self.tx() as conn:
            conn.execute(delete(t.venue_state).where(t.venue_state.c.venue_id.startswith(venue_id + "#", autoescape=True)))
            done = conn.execute(update(t.venue_state).where(t.venue_state.c.venue_id == venue_id).values(state=_jsonable(state), updated_at=now)).rowcount
            if not done:
                conn.execute(insert(t.venue_state).values(venue_id=venue_id, state=_jsonable(state), updated_at=now))

    def save_venue_delta(self, venue_id: str, delta: Mapping[str, Any]) -> None:
        """Apply a paper venue's delta (``PaperExchange.delta()``: head, changed orders, new trades) atomically."""
        now = time.time()
        rows = [{"venue_id": f"{venue_id}#head", "state": delta["head"], "updated_at": now}]
        rows += [{"venue_id": f"{venue_id}#o:{o['id']}", "state": o, "updated_at": now} for o in delta.get("orders") or ()]
        rows += [{"venue_id": f"{venue_id}#t:{tr['id']}", "state": tr, "updated_at": now} for tr in delta.get("trades") or ()]
        sql = self._sql["venue_state"]
        params = [sql.params(r, with_defaults=False) for r in rows]
        upsert = sql.insert(("venue_id", "state", "updated_at")).replace(" RETURNING id", "") + (
            " ON CONFLICT (venue_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at")
        with self.tx():
            self._raw(upsert, params, many=True)

    def load_venue_state(self, venue_id: str) -> dict[str, Any] | None:
        """The venue's state: its full snapshot with every later delta applied (None if never saved)."""
        vs = t.venue_state.c
        rows = self._rows(select(vs.venue_id, vs.state).where((vs.venue_id == venue_id) | vs.venue_id.startswith(venue_id + "#", autoescape=True)))
        if not rows:
            return None
        base = next((r["state"] for r in rows if r["venue_id"] == venue_id), None)
        parts = [r for r in rows if r["venue_id"] != venue_id]
        if not parts:
            return base
        state = dict(base or {})
        orders = {str(o["id"]): o for o in state.get("orders") or ()}
        trades = {str(x["id"]): x for x in state.get("trades") or ()}
        for r in parts:
            kind = r["venue_id"][len(venue_id) + 1:]
            if kind == "head":
                state.update(r["state"])
            elif kind.startswith("o:"):
                orders[kind[2:]] = r["state"]
            elif kind.startswith("t:"):
                trades[kind[2:]] = r["state"]
        state["orders"] = [orders[k] for k in sorted(orders, key=_id_key)]
        state["trades"] = [trades[k] for k in sorted(trades, key=_id_key)]
        return state

class _Outcome(NamedTuple):
    """What one raw statement returned: its rows (when fetched), row count and last row id."""

    rows: list[Any]
    rowcount: int
    lastrowid: int | None


class _TxState(threading.local):
    """Per thread: the open transaction's connection, whether a batch is open."""

    conn: Connection | None = None
    trans: Any = None
    batch: bool = False
    hooks: dict[str, Callable[[], None]] | None = None
    pending: dict[str, dict[Any, dict[str, Any]]] | None = None  # deferred rows: table -> key -> row
    next_position_id: int | None = None  # while the batch holds the write lock: the id of its next position


class _Batch:
    """The context manager of :meth:`Store.batch` (a class: entered on every bar, it must cost ~nothing)."""

    __slots__ = ("store", "owner")

    def __init__(self, store: Store) -> None:
        self.store = store
        self.owner = False

    def __enter__(self) -> None:
        loc = self.store._local
        self.owner = loc.conn is None and not loc.batch
        if self.owner:
            loc.batch = True

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if self.owner:
            loc = self.store._local
            if loc.conn is None and not loc.hooks and not loc.pending:  # nothing was written
                loc.batch = False
                return False
            try:
                self.store._end_batch(commit=exc_type is None)
            finally:
                self.store._local.batch = False
        return False


#: deferred position closes (status, closed time, amount), applied as one UPDATE per batch
_CLOSE_POSITION = "positions:close"
_CLOSING = ("status", "closed_at", "amount")
#: deferred rows that carry their id (positions: see Store.open_position)
_DEFER_WITH_ID = frozenset({"positions"})
#: deferred rows that may already be stored go in with ON CONFLICT DO NOTHING (as their immediate insert does)
_DEFER_CONFLICT = {"fills": ("venue", "venue_trade_id")}


def _id_key(key: str) -> tuple[int, int | str]:
    return (0, int(key)) if key.isdigit() else (1, key)


def _jsonable(value: Any) -> Any:
    """Plain JSON values (what the JSON columns hold): NaN and infinities as null, numpy and timestamps as plain values."""
    return json.loads(json_text(value))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _explain(exc: DBAPIError, url: str) -> str:
    return _explain_text(str(exc.orig) if exc.orig else str(exc), url)


def _explain_text(text: str, url: str) -> str:
    if "UNIQUE constraint" in text or "duplicate key" in text:
        return f"The store {url} refused a row that is already recorded ({text}); nothing was changed."
    if "locked" in text:
        return f"The store {url} is locked by another process ({text}); retry, or stop the other writer."
    if "disk" in text and "full" in text:
        return f"The store {url} cannot write: the disk is full. Free space; nothing was traded blind."
    if "not a database" in text or "malformed" in text:
        return f"The store {url} is corrupt ({text}). Restore it from a backup or move it aside to start fresh."
    return f"The store {url} failed: {text}"


__all__ = ["Store", "DEPLOYMENT_STATUSES", "EXIT_REASONS", "COMMANDS"]
