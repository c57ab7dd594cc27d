"""Headless commands: run (papermill), schedule (cron), report (daily report), dashboard (Voila)."""
from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from ..errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="execute a notebook headless into reports/<name>/<timestamp>.ipynb + .html")
    p.add_argument("notebook", help="path to a .ipynb with a cell tagged 'parameters'")
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                   help="set a parameter (converted to the type of its default); repeat for more")
    p.add_argument("--reports-dir", default="reports")
    p.add_argument("--output", default=None, help="output .ipynb (default reports/<name>/<UTC timestamp>.ipynb)")
    p.add_argument("--cwd", default=None, help="kernel working directory (default: the notebook's folder)")
    p.add_argument("--timeout", type=float, default=None, help="seconds allowed per cell")
    p.add_argument("--no-html", action="store_true", help="skip the offline HTML export")
    p.add_argument("--store-widget-state", action="store_true", help="keep widget state in the output (can be MBs)")
    p.add_argument("--plotly-js", choices=["inline", "shared"], default="inline",
                   help="inline: self-contained HTML (~5 MB with figures); shared: one plotly.min.js beside the runs")
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("schedule", help="run notebooks on cron schedules (see schedules/example.toml)")
    p.add_argument("file", nargs="?", default="schedules/example.toml", help="schedule file (.toml, .json, .yaml)")
    p.add_argument("--once", action="store_true", help="run what is due now, then exit (for crontab/systemd timers)")
    p.add_argument("--now", default=None, help="pretend it is this ISO time (UTC if no offset), for tests and dry runs")
    p.add_argument("--list", action="store_true", help="show each job's last and next fire time, run nothing")
    p.add_argument("--reports-dir", default=None, help="override the schedule's reports_dir")
    p.set_defaults(handler=cmd_schedule)

    p = sub.add_parser("report", help="write the daily report (equity, drawdown, metrics, trades, reconciliation)")
    p.add_argument("--store", default=None, help="store path or URL (default <home>/workbench.sqlite)")
    p.add_argument("--reports-dir", default="reports")
    p.add_argument("--date", default=None, help="report folder date YYYY-MM-DD (default today, UTC)")
    p.add_argument("--deployment", action="append", default=None, help="only this deployment id (repeatable)")
    p.add_argument("--no-png", action="store_true", help="skip PNG export (HTML figures only)")
    p.set_defaults(handler=cmd_report)

    p = sub.add_parser("dashboard", help="serve the live monitor notebook with Voila on 127.0.0.1")
    p.add_argument("notebook", nargs="?", default="notebooks/03_live_monitor.ipynb")
    p.add_argument("--port", type=int, default=8866)
    p.add_argument("--token", default=None, help="access token (default: a new random one, printed with the URL)")
    p.add_argument("--no-token", action="store_true", help="serve without a token (loopback only still)")
    p.add_argument("--open", action="store_true", help="open a browser")
    p.add_argument("--print-command", action="store_true", help="print the voila command line and exit")
    p.set_defaults(handler=cmd_dashboard)


def cmd_run(args: argparse.Namespace) -> int:
    from ..runner import run_notebook

    params: dict[str, str] = {}
    for name, value in args.parameter:
        if name in params:
            raise ConfigError(f"Parameter {name!r} given twice; pass each -p NAME VALUE once.")
        params[name] = value
    res = run_notebook(args.notebook, params, args.reports_dir, from_text=True, output=args.output, html=not args.no_html,
                       cwd=args.cwd, timeout=args.timeout, store_widget_state=args.store_widget_state,
                       plotly_js=args.plotly_js)
    for note in res.notes:
        print(f"note: {note}", file=sys.stderr)
    print(res.describe(), file=sys.stdout if res.ok else sys.stderr)
    return 0 if res.ok else 1


def _parse_now(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC)
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--now {text!r} is not an ISO time; use e.g. 2025-01-01T02:00:00+00:00.") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def cmd_schedule(args: argparse.Namespace) -> int:
    from .. import schedule as sch

    schedule = sch.load_schedule(args.file, reports_dir=args.reports_dir)
    now = _parse_now(args.now)
    if args.list:
        due = {j.name for j, _ in sch.due_jobs(schedule, now)}
        local = schedule.local(now)
        for job in schedule.jobs:
            state = "disabled" if not job.enabled else ("due" if job.name in due else "waiting")
            print(f"{job.name:24} {job.cron:16} last {job.last_fire(local):%Y-%m-%d %H:%M} "
                  f"next {job.next_fire(local):%Y-%m-%d %H:%M} {state}  {job.notebook}")
        return 0
    if args.once:
        records = sch.run_due(schedule, now)
        for rec in records:
            _print_record(rec)
        if not records:
            print(f"nothing due at {now.isoformat(timespec='seconds')}; log: {schedule.log_path}")
        return 0 if all(r["status"] in ("ok", "skipped") for r in records) else 1
    if args.now:
        raise ConfigError("--now only makes sense with --once or --list.")
    print(f"scheduler: {len(schedule.jobs)} jobs, log {schedule.log_path} (Ctrl-C to stop)", flush=True)
    sch.serve(schedule, on_record=_print_record)
    return 0


def _print_record(rec: dict) -> None:
    line = f"{rec['end']} {rec['job']}: {rec['status']}"
    if rec.get("output"):
        line += f" -> {rec['output']}"
    if rec.get("error"):
        line += f" ({rec['error']})"
    print(line, flush=True)


def cmd_report(args: argparse.Namespace) -> int:
    from ..reports.build import build_report
    from .engine import open_store

    report = build_report(open_store(args), args.reports_dir, args.date, args.deployment, png=not args.no_png)
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"report: {report.index} ({len(report.metrics)} deployments, {len(report.trades)} trades)")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from .. import dashboard

    token = None if args.no_token else (args.token or dashboard.new_token())
    if args.print_command:
        print(" ".join(dashboard.voila_command(args.notebook, args.port, token, args.open)))
        return 0
    if not Path(args.notebook).is_file():
        raise ConfigError(f"{args.notebook} does not exist; run from the repository root or give the notebook path.")
    return dashboard.serve(args.notebook, args.port, token, args.open)
