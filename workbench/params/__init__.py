"""The parameter store: ``params/<strategy>/<symbol>_<timeframe>.json``.

Each file holds the newest optimization of one (strategy, symbol, timeframe):
parameters, ``optimized_at``, the data window, metrics, optimizer settings and
a schema version, plus the history of earlier optimizations. Writes are atomic
(temp file + rename). A corrupt file raises :class:`ParamsError` naming it
and never blocks reading the other files.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..errors import ParamsError

SCHEMA_VERSION = 1
HISTORY_LIMIT = 50
DEFAULT_DIR = Path("params")


@dataclass(frozen=True)
class Freshness:
    """Ages that divide fresh / stale / expired parameter sets."""

    stale_after: timedelta = timedelta(days=7)
    expired_after: timedelta = timedelta(days=30)

    def of(self, optimized_at: datetime, now: datetime | None = None) -> str:
        age = (now or datetime.now(UTC)) - optimized_at
        if age > self.expired_after:
            return "expired"
        if age > self.stale_after:
            return "stale"
        return "fresh"


@dataclass
class ParamSet:
    """One optimization result as stored in the param store."""

    strategy: str
    symbol: str
    timeframe: str
    params: dict[str, float]
    optimized_at: datetime
    data_start: str | None = None
    data_end: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    optimizer: dict[str, Any] = field(default_factory=dict)
    freshness: str = "fresh"
    path: Path | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("freshness")
        d.pop("path")
        d["optimized_at"] = self.optimized_at.isoformat()
        d["metrics"] = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in self.metrics.items()}
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any], path: Path | None = None) -> ParamSet:
        try:
            at = datetime.fromisoformat(d["optimized_at"])
            if at.tzinfo is None:
                at = at.replace(tzinfo=UTC)
            return cls(
                strategy=str(d["strategy"]), symbol=str(d["symbol"]), timeframe=str(d["timeframe"]),
                params=dict(d["params"]), optimized_at=at,
                data_start=d.get("data_start"), data_end=d.get("data_end"),
                metrics={k: (math.nan if v is None else v) for k, v in dict(d.get("metrics", {})).items()},
                optimizer=dict(d.get("optimizer", {})), path=path,
            )
        except (KeyError, TypeError, ValueError) as exc:
            where = f" in {path}" if path else ""
            raise ParamsError(f"Invalid parameter record{where}: {exc!r}. Re-run the optimization or fix the field.") from None


def safe_symbol(symbol: str) -> str:
    """'BTC/USDT:USDT' -> 'BTC-USDT-USDT' (safe as a file name)."""
    return "".join(c if c.isalnum() or c in "._" else "-" for c in symbol)


class ParamStore:
    """Reads and writes parameter files under one directory."""

    def __init__(self, root: str | Path = DEFAULT_DIR, freshness: Freshness | None = None) -> None:
        self.root = Path(root)
        self.freshness = freshness or Freshness()

    def __repr__(self) -> str:
        return f"ParamStore({str(self.root)!r})"

    def path_for(self, strategy: str, symbol: str, timeframe: str) -> Path:
        return self.root / strategy / f"{safe_symbol(symbol)}_{timeframe}.json"

    def _read(self, path: Path) -> dict[str, Any]:
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ParamsError(
                f"Parameter file {path} is not valid JSON (line {exc.lineno}: {exc.msg}). "
                "Fix it by hand, or delete it and re-run the optimization."
            ) from None
        except OSError as exc:
            raise ParamsError(f"Cannot read parameter file {path}: {exc.strerror}.") from None
        if not isinstance(doc, dict) or "latest" not in doc:
            raise ParamsError(f"Parameter file {path} has no 'latest' record; delete it and re-run the optimization.")
        if doc.get("schema_version", 0) > SCHEMA_VERSION:
            raise ParamsError(
                f"Parameter file {path} has schema {doc.get('schema_version')}, newer than this workbench "
                f"({SCHEMA_VERSION}); upgrade workbench."
            )
        return doc

    def save(self, record: ParamSet) -> Path:
        """Store `record` as the newest for its key; the previous one moves to history."""
        path = self.path_for(record.strategy, record.symbol, record.timeframe)
        history: list[dict[str, Any]] = []
        if path.exists():
            try:
                old = self._read(path)
                history = [old["latest"], *old.get("history", [])][:HISTORY_LIMIT]
            except ParamsError:
                backup = path.with_suffix(f".corrupt-{datetime.now(UTC):%Y%m%dT%H%M%S}.json")
                os.replace(path, backup)  # keep the broken file for inspection, never lose it
        doc = {"schema_version": SCHEMA_VERSION, "latest": record.to_json(), "history": history}
        _atomic_write(path, json.dumps(doc, indent=2, sort_keys=True, allow_nan=False))
        record.path = path
        return path

    def load_latest(self, strategy: str, symbol: str, timeframe: str, now: datetime | None = None) -> ParamSet:
        """The newest parameters for the key, with their freshness; ParamsError if none."""
        path = self.path_for(strategy, symbol, timeframe)
        if not path.exists():
            raise ParamsError(
                f"No optimized parameters for {strategy} {symbol} {timeframe} (looked for {path}). "
                f"Run `workbench optimize --strategy {strategy} --symbols {symbol} --timeframe {timeframe}`."
            )
        rec = ParamSet.from_json(self._read(path)["latest"], path)
        rec.freshness = self.freshness.of(rec.optimized_at, now)
        return rec

    def history(self, strategy: str, symbol: str, timeframe: str) -> list[ParamSet]:
        """All stored optimizations for the key, newest first."""
        path = self.path_for(strategy, symbol, timeframe)
        if not path.exists():
            return []
        doc = self._read(path)
        out = [ParamSet.from_json(r, path) for r in [doc["latest"], *doc.get("history", [])]]
        for r in out:
            r.freshness = self.freshness.of(r.optimized_at)
        return out

    def list(self, now: datetime | None = None) -> tuple[list[ParamSet], list[ParamsError]]:
        """Every newest record in the store, plus the errors of unreadable files (which never block the rest)."""
        records: list[ParamSet] = []
        errors: list[ParamsError] = []
        if not self.root.exists():
            return records, errors
        for path in sorted(self.root.glob("*/*.json")):
            if ".corrupt-" in path.name:
                continue
            try:
                rec = ParamSet.from_json(self._read(path)["latest"], path)
                rec.freshness = self.freshness.of(rec.optimized_at, now)
                records.append(rec)
            except ParamsError as exc:
                errors.append(exc)
        return records, errors


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["Freshness", "ParamSet", "ParamStore", "safe_symbol", "SCHEMA_VERSION"]
