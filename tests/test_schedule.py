"""Schedules: due computation on an injected clock, one run per notebook at a time, the JSON-lines log, --once."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

import workbench.cli as cli
from workbench.errors import ConfigError
from workbench.schedule import (
    due_jobs,
    load_schedule,
    next_wakeup,
    notebook_lock,
    read_log,
    run_due,
    run_job,
    serve,
)

TINY = (Path(__file__).parent / "notebooks" / "tiny.ipynb").resolve()


def T(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def write(tmp_path: Path, body: str, name: str = "sched.toml") -> Path:
    path = tmp_path / name
    path.write_text(body.replace("NB", str(TINY)).replace("REPORTS", str(tmp_path / "reports")))
    return path


SCHEDULE = """
[defaults]
reports_dir = "REPORTS"

[[job]]
name = "nightly"
notebook = "NB"
cron = "0 2 * * *"
parameters = { bars = 3 }

[[job]]
name = "reconcile"
notebook = "NB"
cron = "*/15 * * * *"
misfire_grace = 600
parameters = { symbol = "ETH/USDT" }
"""


class FakeRun:
    """Stands in for run_notebook: records calls, returns a result with ok/output."""

    def __init__(self, ok: bool = True, raises: Exception | None = None, hook=None):
        self.calls: list[tuple] = []
        self.ok, self.raises, self.hook = ok, raises, hook

    def __call__(self, notebook, parameters, reports_dir, timeout=None, cwd=None):
        self.calls.append((Path(notebook).name, dict(parameters)))
        if self.hook:
            self.hook()
        if self.raises:
            raise self.raises
        out = Path(reports_dir) / "tiny" / f"run{len(self.calls)}.ipynb"
        return SimpleNamespace(ok=self.ok, output=out, html=out.with_suffix(".html"),
                               error=None if self.ok else "RuntimeError: boom", failed_cell=4)


@pytest.fixture
def schedule(tmp_path):
    return load_schedule(write(tmp_path, SCHEDULE))


def names(due):
    return sorted(job.name for job, _ in due)


def test_load_validates_and_types_parameters(schedule, tmp_path):
    assert [j.name for j in schedule.jobs] == ["nightly", "reconcile"]
    assert schedule.jobs[0].parameters == {"bars": 3}
    assert schedule.jobs[1].misfire_grace == 600
    assert schedule.log_path == tmp_path / "reports" / "schedule.jsonl"


@pytest.mark.parametrize("edit, fragment", [
    (("cron = \"0 2 * * *\"", "cron = \"0 25 * * *\""), "invalid cron expression"),
    (("cron = \"0 2 * * *\"", "crn = \"0 2 * * *\""), "Did you mean 'cron'?"),
    (("bars = 3", "bar = 3"), "job 'nightly': tiny.ipynb has no parameter 'bar'. Did you mean 'bars'?"),
    (("bars = 3", "bars = \"three\""), "expects an int"),
    (("reports_dir", "timezone = \"Mars/Olympus\"\nreports_dir"), "unknown timezone"),
    (("name = \"reconcile\"", "name = \"nightly\""), "job names must be unique"),
    (("misfire_grace = 600", "misfire_grace = 0"), "misfire_grace must be > 0"),
])
def test_bad_schedule_files_are_refused_with_how_to_fix(tmp_path, edit, fragment):
    with pytest.raises(ConfigError) as err:
        load_schedule(write(tmp_path, SCHEDULE.replace(*edit)))
    assert fragment in str(err.value)


def test_missing_notebook_and_formats(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_schedule(write(tmp_path, SCHEDULE.replace("NB", "nope.ipynb")))
    js = {"defaults": {"reports_dir": str(tmp_path / "r")},
          "job": [{"name": "a", "notebook": str(TINY), "cron": "5 * * * *"}]}
    (tmp_path / "s.json").write_text(json.dumps(js))
    assert load_schedule(tmp_path / "s.json").jobs[0].cron == "5 * * * *"
    (tmp_path / "s.yaml").write_text(f"job:\n  - name: a\n    notebook: {TINY}\n    cron: '5 * * * *'\n")
    assert load_schedule(tmp_path / "s.yaml").jobs[0].name == "a"
    (tmp_path / "s.ini").write_text("")
    with pytest.raises(ConfigError, match=".toml, .json or .yaml"):
        load_schedule(tmp_path / "s.ini")


def test_due_at_fire_time_once_then_again_next_fire(schedule):
    assert names(due_jobs(schedule, T("2025-01-01T02:00:00"))) == ["nightly", "reconcile"]
    fake = FakeRun()
    recs = run_due(schedule, T("2025-01-01T02:00:30"), run=fake)
    assert [r["job"] for r in recs] == ["nightly", "reconcile"]
    assert fake.calls == [("tiny.ipynb", {"bars": 3}), ("tiny.ipynb", {"symbol": "ETH/USDT"})]
    assert names(due_jobs(schedule, T("2025-01-01T02:14:59"))) == []      # both handled for their fire time
    assert names(due_jobs(schedule, T("2025-01-01T02:15:00"))) == ["reconcile"]
    run_due(schedule, T("2025-01-01T02:15:00"), run=fake)
    assert names(due_jobs(schedule, T("2025-01-02T02:00:05"))) == ["nightly", "reconcile"]


def test_missed_fires_coalesce_and_expire_after_the_grace(schedule):
    # 02:40: nightly is 40 min late (grace 1 h) -> runs once; reconcile's 02:30 fire is 10 min late (grace 10 min) -> runs
    assert names(due_jobs(schedule, T("2025-01-01T02:40:00"))) == ["nightly", "reconcile"]
    # 03:29: nightly missed by 89 min -> skipped; reconcile's newest fire (03:15) is 14 min late -> skipped
    assert names(due_jobs(schedule, T("2025-01-01T03:29:00"))) == []
    fake = FakeRun()
    run_due(schedule, T("2025-01-01T02:40:00"), run=fake)
    assert len(fake.calls) == 2  # one run each for all missed reconcile fires before 02:40, not five


def test_cron_is_read_in_the_schedule_timezone(tmp_path):
    sched = load_schedule(write(tmp_path, SCHEDULE.replace("reports_dir", "timezone = \"Europe/Berlin\"\nreports_dir")))
    assert "nightly" in names(due_jobs(sched, T("2025-01-15T01:00:10")))   # 02:00 in Berlin (UTC+1)
    assert "nightly" not in names(due_jobs(sched, T("2025-01-15T02:00:10")))


def test_log_lines_record_start_end_status_output(schedule):
    clock = iter([100.0, 160.0, 200.0, 230.0]).__next__
    run_due(schedule, T("2025-01-01T02:00:00"), run=FakeRun(ok=False), clock=clock)
    lines = schedule.log_path.read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["job"] == "nightly" and first["status"] == "failed" and first["error"] == "RuntimeError: boom"
    assert first["scheduled_for"] == "2025-01-01T02:00:00+00:00"
    assert first["start"] == "1970-01-01T00:01:40+00:00" and first["end"] == "1970-01-01T00:02:40+00:00"
    assert first["output"].endswith("run1.ipynb") and first["html"].endswith("run1.html")
    assert first["failed_cell"] == 4
    assert read_log(schedule.log_path) == [json.loads(x) for x in lines]


def test_a_job_that_cannot_start_is_logged_and_the_rest_still_run(schedule):
    fake = FakeRun(raises=ConfigError("kernel 'python9' not found"))
    recs = run_due(schedule, T("2025-01-01T02:00:00"), run=fake)
    assert [r["status"] for r in recs] == ["error", "error"] and "python9" in recs[0]["error"]
    assert len(fake.calls) == 2


def test_one_run_at_a_time_per_notebook(schedule):
    job = schedule.jobs[0]
    fake = FakeRun()
    with notebook_lock(schedule.reports_dir, job.notebook):  # a run of this notebook is in progress
        rec = run_job(schedule, job, T("2025-01-01T02:00:00"), run=fake)
    assert rec["status"] == "skipped" and "already running" in rec["error"] and fake.calls == []
    # while a run holds the lock, a second run of the same notebook is refused from inside it
    inner: list[dict] = []
    hook = lambda: inner.append(run_job(schedule, schedule.jobs[1], T("2025-01-01T02:00:00"), run=FakeRun()))  # noqa: E731
    outer = run_job(schedule, job, T("2025-01-01T02:00:00"), run=FakeRun(hook=hook))
    assert outer["status"] == "ok" and inner[0]["status"] == "skipped"
    # the lock is released afterwards
    assert run_job(schedule, job, T("2025-01-02T02:00:00"), run=fake)["status"] == "ok"


def test_serve_loop_wakes_at_fire_times_without_sleeping(schedule):
    now = [T("2025-01-01T01:44:00").timestamp()]
    slept: list[float] = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    fake = FakeRun()
    serve(schedule, run=fake, clock=lambda: now[0], sleep=sleep, until=lambda: len(slept) >= 3)
    # 01:44: reconcile's 01:30 fire is past its 10 min grace, nothing runs; wake at 01:45, then at 02:00
    assert slept[0] == pytest.approx(60.5)
    assert [c[1] for c in fake.calls] == [{"symbol": "ETH/USDT"}, {"bars": 3}, {"symbol": "ETH/USDT"}]
    assert next_wakeup(schedule, T("2025-01-01T02:15:01")) == T("2025-01-01T02:30:00")


def test_disabled_jobs_never_run(tmp_path):
    sched = load_schedule(write(tmp_path, SCHEDULE.replace("parameters = { bars = 3 }", "enabled = false")))
    assert names(due_jobs(sched, T("2025-01-01T02:00:00"))) == ["reconcile"]


def test_cli_once_runs_due_notebook_for_real_and_logs(tmp_path, monkeypatch, capsys):
    if "workbench.cli.run" not in cli.COMMAND_MODULES:
        monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "workbench.cli.run"))
    path = write(tmp_path, SCHEDULE)
    assert cli.main(["schedule", str(path), "--once", "--now", "2025-01-01T02:26:00"]) == 0  # reconcile 11 min late: past grace
    out = capsys.readouterr().out
    [rec] = read_log(tmp_path / "reports" / "schedule.jsonl")
    assert rec["job"] == "nightly" and rec["status"] == "ok" and Path(rec["output"]).exists()
    assert Path(rec["html"]).exists() and rec["output"] in out
    assert cli.main(["schedule", str(path), "--once", "--now", "2025-01-01T02:27:00"]) == 0
    assert "nothing due" in capsys.readouterr().out
    assert cli.main(["schedule", str(path), "--list", "--now", "2025-01-01T02:27:00"]) == 0
    listing = capsys.readouterr().out
    assert "next 2025-01-01 02:30" in listing and "next 2025-01-02 02:00" in listing


def test_cli_now_without_once_is_refused(tmp_path, monkeypatch, capsys):
    if "workbench.cli.run" not in cli.COMMAND_MODULES:
        monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "workbench.cli.run"))
    assert cli.main(["schedule", str(write(tmp_path, SCHEDULE)), "--now", "2025-01-01T02:00:00"]) == 2
    assert "--once" in capsys.readouterr().err


def test_example_schedule_parses(monkeypatch):
    root = Path(__file__).resolve().parents[1]
    sched = load_schedule(root / "schedules" / "example.toml", check_notebooks=False)
    assert {j.name for j in sched.jobs} == {"nightly-optimize", "reconcile", "daily-report"}
    assert timedelta(0) <= T("2025-01-01T02:00:00") - sched.jobs[0].last_fire(T("2025-01-01T02:00:00"))
