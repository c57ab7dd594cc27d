"""A real headless Chromium (Debian's, driven by Playwright) against Voila and JupyterLab on loopback.

The flow a trader follows: deploy from the deploy panel, see the deployment
card and its open position in the monitor, press the emergency stop, see the
position closed. The notebook (tests/browser_notebooks/deploy_monitor.ipynb)
runs a paper engine in its kernel and replays sample bars on deploy until a
position is open. Voila is started through ``workbench.dashboard`` (so the
dashboard command line is exercised with its token). Offline HTML from the
runner and the report builder is opened with every network request blocked.

Needs /usr/bin/chromium (``apt-get install -y chromium``; .ci/run installs it)
and ``pip install playwright`` (never ``playwright install``). Screenshots go to
artifacts/ (gitignored), including ``fail_<test>.png`` when a test fails.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = Path(__file__).parent / "browser_notebooks" / "deploy_monitor.ipynb"
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "wb-browser-test-token"
TIMEOUT_MS = 60_000


def _require_chromium() -> None:
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian chromium is missing: apt-get install -y chromium (.ci/run installs it)")


@pytest.fixture(scope="module")
def pw():
    _require_chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no `playwright install`)")
    sync_api.expect.set_options(timeout=TIMEOUT_MS)  # the default 5 s is too short for a first widget render
    return sync_api


@pytest.fixture(scope="module")
def browser(pw):
    with pw.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, request):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1400})
    pg = ctx.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    failed_before = request.session.testsfailed
    yield pg
    if request.session.testsfailed > failed_before:  # the call phase failed (its report is logged before teardown)
        shot(pg, f"fail_{request.node.name}")
    ctx.close()


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.png"
    try:
        page.screenshot(path=str(path), full_page=True)
    except Exception as exc:  # a crashed page must not hide the test's own failure
        print(f"screenshot {path} failed: {exc}")
    return path


# -- servers ------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early (rc={proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - t0
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer in {timeout}s:\n{log.read_text()[-3000:]}")


class Server:
    """A server process we started: stopped by its own pid with SIGTERM (it shuts its kernels down)."""

    def __init__(self, cmd: list[str], log: Path, cwd: Path) -> None:
        self.log_path = log
        self._log = open(log, "w")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "JUPYTER_PLATFORM_DIRS": "1"}
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=cwd, env=env)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A temporary root holding a copy of the notebook, so autosave never rewrites the repo."""
    d = tmp_path_factory.mktemp("nbroot")
    shutil.copy(NOTEBOOK, d / NOTEBOOK.name)
    return d


@pytest.fixture(scope="module")
def voila(workdir, tmp_path_factory) -> Iterator[tuple[str, Server]]:
    pytest.importorskip("voila", reason="pip install voila")
    from workbench.dashboard import dashboard_url, voila_command

    port = free_port()
    server = Server(voila_command(workdir / NOTEBOOK.name, port, TOKEN), tmp_path_factory.mktemp("voila") / "voila.log", workdir)
    try:
        wait_http(f"http://127.0.0.1:{port}/voila/static/voila.js", server.proc, server.log_path)
        yield dashboard_url(port, TOKEN), server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def lab(workdir, tmp_path_factory) -> Iterator[tuple[str, Server]]:
    port = free_port()
    cfg = tmp_path_factory.mktemp("labcfg")
    settings = cfg / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={workdir}",
           f"--LabApp.user_settings_dir={cfg / 'settings'}", f"--LabApp.workspaces_dir={cfg / 'workspaces'}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    server = Server(cmd, cfg / "lab.log", workdir)
    try:
        wait_http(f"http://127.0.0.1:{port}/api/status?token={TOKEN}", server.proc, server.log_path)
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.stop()


# -- the flow -----------------------------------------------------------------------
def deploy_watch_emergency_stop(page, expect, scope, name: str) -> None:
    """Deploy from the panel, see card + position, emergency stop, see the position closed."""
    panel = scope.locator(".wb-deploy-panel")
    expect(panel).to_be_visible()
    expect(scope.locator(".wb-monitor-panel")).to_be_visible()
    expect(scope.locator(".wb-monitor-positions")).to_contain_text("no open positions")
    expect(scope.locator(".wb-monitor-card")).to_have_count(0)

    scope.locator("button.wb-deploy-review").click()
    confirm_box = scope.locator(".wb-deploy-confirm-box")
    expect(confirm_box).to_be_visible()
    expect(scope.locator(".wb-deploy-summary")).to_contain_text("sma_cross on BTC/USDT")
    expect(scope.locator(".wb-deploy-disclosure")).to_contain_text("risk")
    scope.locator("button.wb-deploy-confirm").click()
    expect(scope.locator(".wb-deploy-message")).to_contain_text("Deployed")
    expect(confirm_box).to_be_hidden()

    card = scope.locator(".wb-monitor-card")
    expect(card).to_have_count(1)  # appears on the monitor's own 1 s refresh
    expect(card.locator(".wb-monitor-card-title")).to_contain_text("active")
    expect(card.locator(".wb-card-open")).to_have_text("1")
    rows = scope.locator(".wb-monitor-positions table.wb-positions-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("BTC/USDT")
    expect(rows.first).to_contain_text("long")
    shot(page, f"{name}_deployed")

    stop = scope.locator("button.wb-emergency-stop")
    expect(stop).to_be_visible()
    stop.click()
    expect(scope.locator(".wb-emergency-confirm-box")).to_be_visible()
    scope.locator("button.wb-emergency-confirm").click()

    expect(scope.locator(".wb-monitor-positions")).to_contain_text("no open positions")
    expect(card.locator(".wb-card-open")).to_have_text("0")
    expect(card.locator(".wb-monitor-card-title")).to_contain_text("stopped")
    expect(scope.locator(".wb-monitor-trades table.wb-trades-table")).to_contain_text("emergency_stop")
    expect(scope.locator(".wb-monitor-message")).to_contain_text("1 position(s) closed")
    expect(stop).to_be_hidden()  # nothing deployed any more
    shot(page, f"{name}_emergency_stopped")


def test_voila_dashboard_deploy_monitor_emergency_stop(voila, page, pw):
    url, server = voila
    page.goto(url)  # token in the URL: the dashboard refuses requests without it
    try:
        deploy_watch_emergency_stop(page, pw.expect, page, "voila")
    except Exception:
        print(server.tail())
        raise


def test_voila_dashboard_requires_its_token(voila):
    url, _ = voila
    base = url.split("?")[0]
    req = urllib.request.Request(base)
    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as err:
        opener.open(req, timeout=10)
    assert err.value.code in (302, 401, 403)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_jupyterlab_deploy_monitor_emergency_stop(lab, page, pw):
    url, server = lab
    expect = pw.expect
    # ?reset: ignore any saved workspace so only this notebook is open
    page.goto(f"{url}/lab/tree/{NOTEBOOK.name}?token={TOKEN}&reset")
    nb = page.locator(".jp-NotebookPanel:visible")
    # the toolbar says idle before the kernel exists; the status bar's "| Idle" means it is connected
    expect(page.locator(".jp-StatusBar-Widget").get_by_text(re.compile(r"\(ipykernel\) \| Idle"))).to_be_visible()
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    try:
        deploy_watch_emergency_stop(page, expect, nb.locator(".jp-OutputArea-output"), "lab")
    except Exception:
        print(server.tail())
        raise


# -- offline HTML in a browser with the network cut ------------------------------------
def _offline_page(browser):
    ctx = browser.new_context(viewport={"width": 1200, "height": 900})
    blocked: list[str] = []

    def route(r):
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    ctx.route("**/*", route)
    pg = ctx.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    return ctx, pg, blocked


def test_runner_html_renders_plotly_with_network_blocked(browser, pw, tmp_path):
    import nbformat

    from workbench.runner import export_html

    nb = nbformat.v4.new_notebook()
    fig = {"data": [{"type": "scatter", "x": [1, 2, 3], "y": [2, 1, 3]}], "layout": {"title": {"text": "offline"}}}
    nb.cells = [nbformat.v4.new_code_cell("fig", outputs=[nbformat.v4.new_output(
        "display_data", data={"application/vnd.plotly.v1+json": fig, "text/plain": "Figure"})])]
    nbformat.write(nb, tmp_path / "offline.ipynb")
    html = export_html(tmp_path / "offline.ipynb")
    ctx, pg, blocked = _offline_page(browser)
    try:
        pg.goto(html.as_uri())
        pw.expect(pg.locator(".js-plotly-plot .main-svg").first).to_be_visible()
        pw.expect(pg.locator(".js-plotly-plot .scatterlayer .trace")).to_have_count(1)
        assert blocked == []
        shot(pg, "runner_offline_html")
    finally:
        ctx.close()


def test_report_html_renders_plotly_with_network_blocked(browser, pw, tmp_path):
    from workbench.engine.replay import replay
    from workbench.reports.build import build_report
    from workbench.store import Store

    store = Store(tmp_path / "wb.sqlite")
    replay({"strategy": "sma_cross", "symbols": ["BTC/USDT"], "timeframe": "1h", "params": {"fast": 5, "slow": 20}},
           bars=300, store=store)
    rep = build_report(store, tmp_path / "reports", png=False)
    ctx, pg, blocked = _offline_page(browser)
    try:
        pg.goto(rep.index.as_uri())
        pw.expect(pg.locator(".js-plotly-plot")).to_have_count(2)  # returns + the deployment's equity/drawdown
        pw.expect(pg.locator(".js-plotly-plot .main-svg").first).to_be_visible()
        assert blocked == []
        shot(pg, "report_offline_html")
    finally:
        ctx.close()
