"""Scheduled headless runs: cron expressions per notebook, one run at a time per notebook, a JSON-lines log.

A schedule file (TOML, JSON or YAML) lists jobs::

    [defaults]
    reports_dir = "reports"
    timezone = "UTC"          # cron times are read in this zone
    misfire_grace = 3600      # a fire missed by more than this many seconds is skipped

    [[job]]
    name = "nightly-optimize"
    notebook = "notebooks/01_optimize.ipynb"
    cron = "0 2 * * *"
    parameters = { timeframe = "1h" }

A job is *due* when its newest fire time at or before now is within
``misfire_grace`` and the log has no run of the job for that fire time, so
missed fires coalesce into one run and nothing runs twice. Each run holds an
exclusive lock on its notebook (``<reports_dir>/.locks``, flock), so two runs of
the same notebook never overlap, even from two scheduler processes.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigError, unknown

LOG_NAME = "schedule.jsonl"
JOB_KEYS = {"name", "notebook", "cron", "parameters", "timeout", "cwd", "misfire_grace", "enabled"}
DEFAULT_KEYS = {"reports_dir", "timezone", "misfire_grace", "timeout", "cwd"}


@dataclass(frozen=True)
class Job:
    """One scheduled notebook run."""

    name: str
    notebook: Path
    cron: str
    parameters: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    cwd: Path | None = None
    misfire_grace: float = 3600.0
    enabled: bool = True

    def last_fire(self, now: datetime) -> datetime:
        """The newest fire time at or before `now` (in now's time zone)."""
        from croniter import croniter

        it = croniter(self.cron, now + timedelta(microseconds=1))
        return it.get_prev(datetime)

    def next_fire(self, now: datetime) -> datetime:
        """The first fire time strictly after `now`."""
        from croniter import croniter

        return croniter(self.cron, now).get_next(datetime)


@dataclass(frozen=True)
class Schedule:
    """Jobs plus where they write (``reports_dir``) and the zone their cron times are read in."""

    jobs: tuple[Job, ...]
    reports_dir: Path = Path("reports")
    timezone: str = "UTC"

    @property
    def log_path(self) -> Path:
        return self.reports_dir / LOG_NAME

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local(self, now: datetime) -> datetime:
        if now.tzinfo is None:
            raise ConfigError("Give the clock a time zone (e.g. 2025-01-01T02:00:00+00:00).")
        return now.astimezone(self.tz)


# -- loading ----------------------------------------------------------------------
def load_schedule(path: str | Path, reports_dir: str | Path | None = None, check_notebooks: bool = True) -> Schedule:
    """Read and validate a schedule file (.toml, .json, .yaml/.yml).

    Relative notebook and report paths are taken from the current directory.
    With `check_notebooks`, each job's notebook must exist and its parameters
    must match the notebook's parameters cell, so a typo fails now, not at 2 am.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Schedule file {path} does not exist. See schedules/example.toml for the format.")
    raw = _read(path)
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: expected a table with [defaults] and [[job]] entries.")
    extra = set(raw) - {"defaults", "job", "jobs"}
    if extra:
        raise unknown("schedule section", sorted(extra)[0], ["defaults", "job"])
    defaults = dict(raw.get("defaults") or {})
    for key in defaults:
        if key not in DEFAULT_KEYS:
            raise unknown("defaults key", key, DEFAULT_KEYS)
    tz = str(defaults.get("timezone", "UTC"))
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{path}: unknown timezone {tz!r}; use an IANA name such as 'UTC' or 'Europe/Berlin'.") from exc
    items = raw.get("job", raw.get("jobs")) or []
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{path}: no jobs. Add at least one [[job]] with name, notebook and cron.")
    jobs = [_job(item, defaults, path, check_notebooks) for item in items]
    names = [j.name for j in jobs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"{path}: job names must be unique; repeated: {', '.join(sorted(dup))}.")
    return Schedule(tuple(jobs), Path(reports_dir or defaults.get("reports_dir", "reports")), tz)


def _read(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            import tomllib

            return tomllib.loads(text)
        if path.suffix == ".json":
            return json.loads(text)
        if path.suffix in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text)
    except Exception as exc:
        raise ConfigError(f"{path} is not valid {path.suffix[1:].upper()}: {exc}") from exc
    raise ConfigError(f"{path}: schedule files are .toml, .json or .yaml, not {path.suffix or 'extensionless'}.")


def _job(item: Any, defaults: Mapping[str, Any], path: Path, check: bool) -> Job:
    from croniter import croniter

    if not isinstance(item, Mapping):
        raise ConfigError(f"{path}: each job is a table with name, notebook and cron, got {item!r}.")
    for key in item:
        if key not in JOB_KEYS:
            raise unknown("job key", key, JOB_KEYS)
    missing = [k for k in ("name", "notebook", "cron") if k not in item]
    if missing:
        raise ConfigError(f"{path}: job {item.get('name', '?')!r} lacks {', '.join(missing)}.")
    name, cron = str(item["name"]), str(item["cron"])
    if not croniter.is_valid(cron):
        raise ConfigError(f"{path}: job {name!r} has an invalid cron expression {cron!r}; "
                          "use five fields 'minute hour day month weekday', e.g. '*/15 * * * *'.")
    params = item.get("parameters") or {}
    if not isinstance(params, Mapping):
        raise ConfigError(f"{path}: job {name!r} parameters must be a table of name = value.")
    notebook = Path(str(item["notebook"]))
    if check:
        from .runner import validate_parameters

        try:
            params = validate_parameters(notebook, params)
        except ConfigError as exc:
            raise ConfigError(f"{path}: job {name!r}: {exc}") from exc
    grace = float(item.get("misfire_grace", defaults.get("misfire_grace", 3600)))
    if grace <= 0:
        raise ConfigError(f"{path}: job {name!r} misfire_grace must be > 0 seconds.")
    timeout = item.get("timeout", defaults.get("timeout"))
    cwd = item.get("cwd", defaults.get("cwd"))
    return Job(name, notebook, cron, dict(params), None if timeout is None else float(timeout),
               None if cwd is None else Path(str(cwd)), grace, bool(item.get("enabled", True)))


# -- the log ----------------------------------------------------------------------
def read_log(log_path: str | Path) -> list[dict[str, Any]]:
    """Every run record in a JSON-lines log (a torn last line is ignored)."""
    path = Path(log_path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def append_log(log_path: str | Path, record: Mapping[str, Any]) -> None:
    """Append one record as a line (opened in append mode, so concurrent writers do not interleave lines)."""
    path = Path(log_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(dict(record), default=str) + "\n")


def _iso(t: datetime | float) -> str:
    if isinstance(t, (int, float)):
        t = datetime.fromtimestamp(t, UTC)
    return t.astimezone(UTC).isoformat(timespec="seconds")


# -- due / lock / run ---------------------------------------------------------------
def due_jobs(schedule: Schedule, now: datetime, log: list[dict[str, Any]] | None = None) -> list[tuple[Job, datetime]]:
    """Jobs to run at `now`, each with the fire time it stands for."""
    now = schedule.local(now)
    log = read_log(schedule.log_path) if log is None else log
    handled = {(r.get("job"), r.get("scheduled_for")) for r in log}
    out = []
    for job in schedule.jobs:
        if not job.enabled:
            continue
        fire = job.last_fire(now)
        if (now - fire).total_seconds() > job.misfire_grace:
            continue
        if (job.name, _iso(fire)) in handled:
            continue
        out.append((job, fire))
    return out


class Locked(Exception):
    """Another run of the same notebook holds its lock."""


@contextmanager
def notebook_lock(reports_dir: str | Path, notebook: str | Path) -> Iterator[Path]:
    """Hold an exclusive, non-blocking lock for `notebook`; raise Locked if it is running elsewhere.

    flock locks die with their process, so a crashed run never leaves a stale lock.
    """
    folder = Path(reports_dir) / ".locks"
    folder.mkdir(parents=True, exist_ok=True)
    key = str(Path(notebook).resolve()).strip("/").replace("/", "__")
    path = folder / f"{key}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Locked(f"{notebook} is already running (lock {path})") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield path
    finally:
        os.close(fd)  # closing releases the flock


RunFn = Callable[..., Any]


def run_job(schedule: Schedule, job: Job, fire: datetime, run: RunFn | None = None,
            clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """Run one job under its notebook lock and log it; returns the log record.

    `run` defaults to :func:`workbench.runner.run_notebook` (tests inject a fake).
    Status is ok, failed (a cell raised), error (could not start) or skipped (locked).
    """
    if run is None:
        from .runner import run_notebook as run
    record: dict[str, Any] = {"job": job.name, "notebook": str(job.notebook), "scheduled_for": _iso(fire),
                              "start": _iso(clock()), "end": None, "status": None, "output": None, "html": None}
    try:
        with notebook_lock(schedule.reports_dir, job.notebook):
            try:
                res = run(job.notebook, job.parameters, reports_dir=schedule.reports_dir,
                          timeout=job.timeout, cwd=job.cwd)
            except Exception as exc:  # bad notebook/parameters: log it and go on with the other jobs
                record.update(status="error", error=f"{type(exc).__name__}: {exc}")
            else:
                record.update(status="ok" if res.ok else "failed", output=str(res.output),
                              html=str(res.html) if res.html else None)
                if not res.ok:
                    record.update(error=res.error, failed_cell=res.failed_cell)
    except Locked as exc:
        record.update(status="skipped", error=str(exc))
    record["end"] = _iso(clock())
    append_log(schedule.log_path, record)
    return record


def run_due(schedule: Schedule, now: datetime, run: RunFn | None = None,
            clock: Callable[[], float] = time.time) -> list[dict[str, Any]]:
    """Run every job due at `now`, one after another; return their log records."""
    return [run_job(schedule, job, fire, run, clock) for job, fire in due_jobs(schedule, now)]


def next_wakeup(schedule: Schedule, now: datetime) -> datetime:
    """The earliest next fire time over the enabled jobs."""
    now = schedule.local(now)
    return min(j.next_fire(now) for j in schedule.jobs if j.enabled)


def serve(schedule: Schedule, run: RunFn | None = None, clock: Callable[[], float] = time.time,
          sleep: Callable[[float], None] = time.sleep, until: Callable[[], bool] | None = None,
          on_record: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Run due jobs, sleep until the next fire time, repeat (until `until()` is true)."""
    if not any(j.enabled for j in schedule.jobs):
        raise ConfigError("Every job in the schedule is disabled; nothing to run.")
    while until is None or not until():
        now = datetime.fromtimestamp(clock(), UTC)
        for rec in run_due(schedule, now, run, clock):
            if on_record:
                on_record(rec)
        wake = next_wakeup(schedule, datetime.fromtimestamp(clock(), UTC))
        sleep(max(0.0, wake.timestamp() - clock()) + 0.5)


__all__ = ["Job", "Locked", "Schedule", "append_log", "due_jobs", "load_schedule", "next_wakeup",
           "notebook_lock", "read_log", "run_due", "run_job", "serve"]
