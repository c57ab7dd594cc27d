"""Validation of OHLCV frames at the boundary, with explicit repairs.

Every check names the first offending row and how to fix it. Nothing is ever
repaired silently: pass ``repair=`` with the repairs you accept.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..timeframes import timeframe_seconds

COLUMNS = ("open", "high", "low", "close", "volume")
REPAIRS = frozenset({"sort", "dedupe", "fill_gaps", "drop_invalid"})


def _row(df: pd.DataFrame, pos: int) -> str:
    return f"row {pos} ({df.index[pos]})"


def validate_ohlcv(
    df: pd.DataFrame,
    timeframe: str | None = None,
    repair: Iterable[str] | bool = (),
    allow_gaps: bool = False,
) -> pd.DataFrame:
    """Check an OHLCV frame and return it (repaired only as asked).

    Checks: the five columns, a UTC DatetimeIndex sorted without duplicates,
    no missing bars for `timeframe` (unless `allow_gaps`), no NaN, high >= low,
    high/low enclosing open and close, positive prices and non-negative volume.
    `repair` may hold 'sort', 'dedupe' (keep the last of duplicated timestamps),
    'fill_gaps' (flat bars at the previous close with zero volume) and
    'drop_invalid' (drop rows with NaN or impossible prices); True means all.
    """
    repairs = set(REPAIRS) if repair is True else set(repair or ())
    bad = repairs - REPAIRS
    if bad:
        raise DataError(f"Unknown repair(s) {sorted(bad)}; choose from {sorted(REPAIRS)}.")
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"Expected a pandas DataFrame of OHLCV, got {type(df).__name__}.")
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataError(
            f"OHLCV data lacks column(s) {missing}; it needs {list(COLUMNS)} "
            f"(got {list(df.columns)}). Rename your columns to these lower-case names."
        )
    try:
        out = df.loc[:, list(COLUMNS)].astype("float64")
    except (ValueError, TypeError):
        for col in COLUMNS:
            raw = df[col]
            bad = np.flatnonzero(pd.to_numeric(raw, errors="coerce").isna().to_numpy() & raw.notna().to_numpy())
            if len(bad):
                raise DataError(
                    f"Non-numeric {col} {raw.iloc[int(bad[0])]!r} at {_row(df, int(bad[0]))}. Correct the source, "
                    "or convert with pd.to_numeric(errors='coerce') and pass repair=['drop_invalid']."
                ) from None
        raise
    if not isinstance(out.index, pd.DatetimeIndex):
        raise DataError("OHLCV data needs a DatetimeIndex of bar open times; set it with df.set_index('timestamp').")
    out.index = out.index.tz_localize("UTC") if out.index.tz is None else out.index.tz_convert("UTC")
    out.index = out.index.as_unit("ns")
    out.index.name = "timestamp"
    nat = np.flatnonzero(out.index.isna())
    if len(nat):
        if "drop_invalid" not in repairs:
            raise DataError(
                f"Missing timestamp (NaT) at row {int(nat[0])} ({len(nat)} such rows). "
                "Fix the time column or pass repair=['drop_invalid'] to drop those rows."
            )
        out = out[~out.index.isna()]

    ts = out.index.asi8
    if len(ts) > 1:
        back = np.flatnonzero(np.diff(ts) < 0)
        if len(back):
            if "sort" not in repairs:
                raise DataError(
                    f"Timestamps are not sorted: {_row(out, int(back[0]) + 1)} comes before the row above it. "
                    "Sort the data by time or pass repair=['sort']."
                )
            out = out.sort_index(kind="stable")
        dup = np.flatnonzero(out.index.duplicated(keep="last"))
        if len(dup):
            if "dedupe" not in repairs:
                raise DataError(
                    f"Duplicated timestamp at {_row(out, int(dup[0]))}; each bar must appear once. "
                    "Remove the duplicates or pass repair=['dedupe'] to keep the last of each."
                )
            out = out[~out.index.duplicated(keep="last")]

    values = out.to_numpy()
    o, h, lo, c, v = values.T
    nan_rows = np.flatnonzero(~np.isfinite(values).all(axis=1))
    impossible = np.flatnonzero(
        (h < lo) | (o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0) | (v < 0)
        | (h < np.maximum(o, c) * (1 - 1e-12)) | (lo > np.minimum(o, c) * (1 + 1e-12))
    )
    if len(nan_rows) or len(impossible):
        if "drop_invalid" not in repairs:
            if len(nan_rows):
                pos = int(nan_rows[0])
                cols = [col for col, x in zip(COLUMNS, values[pos], strict=True) if not np.isfinite(x)]
                raise DataError(
                    f"NaN or infinite value in {cols} at {_row(out, pos)} ({len(nan_rows)} such rows). "
                    "Fill or remove them, or pass repair=['drop_invalid']."
                )
            pos = int(impossible[0])
            r = dict(zip(COLUMNS, values[pos], strict=True))
            why = (
                "high < low" if r["high"] < r["low"]
                else "a non-positive price" if min(r["open"], r["high"], r["low"], r["close"]) <= 0
                else "negative volume" if r["volume"] < 0
                else "high/low do not enclose open and close"
            )
            raise DataError(
                f"Impossible bar at {_row(out, pos)}: {why} ({r}); {len(impossible)} such rows. "
                "Correct the source or pass repair=['drop_invalid'] to drop them."
            )
        keep = np.ones(len(out), dtype=bool)
        keep[nan_rows] = False
        keep[impossible] = False
        out = out[keep]

    if timeframe is not None and len(out) > 1:
        step = timeframe_seconds(timeframe) * 1_000_000_000
        diffs = np.diff(out.index.asi8)
        off_grid = np.flatnonzero(diffs % step != 0)
        if len(off_grid):
            raise DataError(
                f"Timestamp at {_row(out, int(off_grid[0]) + 1)} is not on the {timeframe} grid. "
                "Resample the data to the timeframe first."
            )
        gaps = np.flatnonzero(diffs > step)
        if len(gaps) and not allow_gaps:
            if "fill_gaps" not in repairs:
                n_missing = int((diffs[gaps] // step - 1).sum())
                raise DataError(
                    f"{n_missing} missing {timeframe} bar(s); the first gap follows {_row(out, int(gaps[0]))}. "
                    "Download the missing bars, pass repair=['fill_gaps'] to insert flat zero-volume bars, "
                    "or allow_gaps=True if the market really had no trades."
                )
            full = pd.date_range(out.index[0], out.index[-1], freq=pd.Timedelta(step, "ns"), name="timestamp")
            out = out.reindex(full)
            close = out["close"].ffill()
            for col in ("open", "high", "low"):
                out[col] = out[col].fillna(close)
            out["close"] = close
            out["volume"] = out["volume"].fillna(0.0)
    return out


def read_csv(
    path: str | Path,
    timeframe: str | None = None,
    repair: Iterable[str] | bool = (),
    allow_gaps: bool = False,
) -> pd.DataFrame:
    """Import OHLCV from a CSV file and validate it.

    The file needs a time column (``timestamp``, ``time``, ``date`` or
    ``datetime``: epoch milliseconds/seconds or ISO dates) and the five OHLCV
    columns; names are case-insensitive. Errors name the CSV row.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"CSV file {str(path)!r} does not exist.")
    try:
        raw = pd.read_csv(path)
    except Exception as exc:  # pandas raises many parser errors
        raise DataError(f"Could not parse {path.name} as CSV: {exc}") from None
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    tcol = next((c for c in ("timestamp", "time", "date", "datetime") if c in raw.columns), None)
    if tcol is None:
        raise DataError(
            f"{path.name} has no time column; name one of them 'timestamp' (epoch ms or ISO date). "
            f"Columns found: {list(raw.columns)}."
        )
    t = raw[tcol]
    try:
        if pd.api.types.is_numeric_dtype(t):
            unit = "ms" if t.abs().max() > 1e11 else "s"
            index = pd.to_datetime(t, unit=unit, utc=True)
        else:
            index = pd.to_datetime(t, utc=True)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path.name}: column {tcol!r} is not a time: {exc}") from None
    frame = raw.drop(columns=[tcol])
    for col in COLUMNS:
        if col in frame.columns:
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
    frame.index = pd.DatetimeIndex(index, name="timestamp")
    try:
        return validate_ohlcv(frame, timeframe=timeframe, repair=repair, allow_gaps=allow_gaps)
    except DataError as exc:
        raise DataError(f"{path.name}: {exc} (CSV line = row + 2)") from None
