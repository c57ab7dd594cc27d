"""The store's hot statements as plain SQL on the DBAPI connection, rendered once from the schema.

SQLAlchemy Core spends 20-40 times the database's own work building, caching
and adapting each statement (profiled: ~0.5 ms per insert against ~15 µs for
the same insert on the sqlite3 cursor). The engine writes a few dozen rows
per trade, so the statements it issues on every order go through here. The
SQL comes from the same :mod:`workbench.store.schema` tables, and rows read
here decode exactly as SQLAlchemy would (JSON columns parsed, booleans as
bool), so both paths see one store.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import JSON, Boolean, Table


class TableSql:
    """SQL text and row conversion for one table, for one DBAPI paramstyle."""

    def __init__(self, table: Table, paramstyle: str, returning: bool) -> None:
        self.name = table.name
        self.columns = [c.name for c in table.columns]
        self.json = frozenset(c.name for c in table.columns if isinstance(c.type, JSON))
        self.bools = frozenset(c.name for c in table.columns if isinstance(c.type, Boolean))
        self.defaults: dict[str, Any] = {}
        for c in table.columns:
            if c.default is not None and getattr(c.default, "is_scalar", False):
                self.defaults[c.name] = c.default.arg
            elif c.default is not None and getattr(c.default, "is_callable", False):
                self.defaults[c.name] = c.default.arg  # called per row
        self.pyformat = paramstyle in ("pyformat", "format")
        self.returning = returning
        self._inserts: dict[tuple[str, ...], str] = {}
        self._plans: dict[tuple[str, ...], tuple[list[int], list[int], list[tuple[int, str, Any]]]] = {}
        self.select_all = f"SELECT {', '.join(self.columns)} FROM {self.name}"

    def ph(self, name: str) -> str:
        """The placeholder for parameter `name`."""
        return f"%({name})s" if self.pyformat else f":{name}"

    def insert(self, keys: Sequence[str], conflict: Sequence[str] | None = None) -> str:
        """INSERT of `keys` (… ON CONFLICT DO NOTHING on `conflict`; … RETURNING id where needed)."""
        cache_key = (*keys, "|", *(conflict or ()))
        sql = self._inserts.get(cache_key)
        if sql is None:
            sql = f"INSERT INTO {self.name} ({', '.join(keys)}) VALUES ({', '.join(self.ph(k) for k in keys)})"
            if conflict:
                sql += f" ON CONFLICT ({', '.join(conflict)}) DO NOTHING"
            if self.returning and "id" in self.columns:
                sql += " RETURNING id"
            self._inserts[cache_key] = sql
        return sql

    def insert_rows(self, keys: Sequence[str], conflict: Sequence[str] | None = None) -> str:
        """INSERT of `keys` bound by position (rows as tuples: the cheapest bulk form; no RETURNING)."""
        mark = "%s" if self.pyformat else "?"
        sql = f"INSERT INTO {self.name} ({', '.join(keys)}) VALUES ({', '.join(mark for _ in keys)})"
        return sql + (f" ON CONFLICT ({', '.join(conflict)}) DO NOTHING" if conflict else "")

    def update(self, keys: Sequence[str], where: str, key: str = "_where") -> str:
        """UPDATE of `keys` on the rows whose `where` column equals parameter `key`."""
        sets = ", ".join(f"{k} = {self.ph(k)}" for k in keys)
        return f"UPDATE {self.name} SET {sets} WHERE {where} = {self.ph(key)}"

    def params(self, row: Mapping[str, Any], with_defaults: bool = True) -> dict[str, Any]:
        """Bind values: defaults filled in, JSON columns as text, booleans as bool (SQLite stores 0/1)."""
        out = dict(row)
        if with_defaults:
            for name, default in self.defaults.items():
                if name not in out:
                    out[name] = default(None) if callable(default) else default
        for name in self.json.intersection(out):
            out[name] = json_text(out[name])
        for name in self.bools.intersection(out):
            if out[name] is not None:
                out[name] = bool(out[name])
        return out

    def values(self, keys: tuple[str, ...], rows: Any) -> list[tuple[Any, ...]]:
        """Each row's :meth:`params` (defaults filled in) as a tuple in the order of `keys`, for :meth:`insert_rows`.

        The same values, in one pass per row: a replay writes a dozen deferred rows a trade through here.
        """
        plan = self._plans.get(keys)
        if plan is None:
            plan = self._plans[keys] = ([i for i, k in enumerate(keys) if k in self.json], [i for i, k in enumerate(keys) if k in self.bools],
                                        [(i, k, self.defaults[k]) for i, k in enumerate(keys) if k in self.defaults])
        json_at, bool_at, default_at = plan
        out = []
        for row in rows:
            vals = list(map(row.get, keys))
            for i, name, default in default_at:
                if name not in row:
                    vals[i] = default(None) if callable(default) else default
            for i in json_at:
                if vals[i] is not None or keys[i] in row:
                    vals[i] = json_text(vals[i])
            for i in bool_at:
                if vals[i] is not None:
                    vals[i] = bool(vals[i])
            out.append(tuple(vals))
        return out

    def decode(self, row: Sequence[Any]) -> dict[str, Any]:
        """A row of :attr:`select_all` as SQLAlchemy would return it."""
        out = dict(zip(self.columns, row, strict=True))
        for name in self.json:
            value = out[name]
            if isinstance(value, str):
                out[name] = json.loads(value)
        for name in self.bools:
            if out[name] is not None:
                out[name] = bool(out[name])
        return out


def json_text(value: Any) -> str:
    """JSON text of `value` with NaN and infinities as null, numpy scalars and timestamps as plain values.

    orjson (installed with ccxt) writes it 5-10 times faster than the standard
    encoder, which stays the fallback for what orjson refuses (integers past 64 bits).
    """
    try:
        return _orjson_dumps(value, default=_default, option=_ORJSON_OPTIONS).decode()
    except TypeError:
        pass
    try:
        return _ENCODER.encode(value)
    except ValueError:
        return _ENCODER.encode(_finite(value))


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        return _finite(value.item())
    return value


def _default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        item = obj.item()
        return item if not isinstance(item, float) or math.isfinite(item) else None
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    return str(obj)


_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
_orjson_dumps = orjson.dumps
_ENCODER = json.JSONEncoder(default=_default, allow_nan=False)  # one instance: json.dumps(default=...) builds one per call
