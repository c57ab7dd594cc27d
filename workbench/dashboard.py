"""`workbench dashboard`: the live monitor notebook served by Voila, on loopback only, behind a token.

Voila runs the notebook in a fresh kernel per page load and shows only its
outputs (the widget panels), so the monitor works as a web page without
exposing a notebook server that can run arbitrary code.
"""
from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

from .errors import ConfigError

DEFAULT_NOTEBOOK = Path("notebooks/03_live_monitor.ipynb")
LOOPBACK = "127.0.0.1"


def voila_command(notebook: str | Path = DEFAULT_NOTEBOOK, port: int = 8866, token: str | None = None,
                  open_browser: bool = False, python: str = sys.executable) -> list[str]:
    """The command line that serves `notebook` with Voila on 127.0.0.1:`port`, requiring `token` if given."""
    path = Path(notebook)
    if path.suffix != ".ipynb" or not path.is_file():
        raise ConfigError(f"Cannot serve {path}: not an existing .ipynb file (default {DEFAULT_NOTEBOOK}).")
    if not 0 < int(port) < 65536:
        raise ConfigError(f"Port {port} is out of range; use 1-65535 (default 8866).")
    cmd = [python, "-m", "voila", str(path), f"--port={int(port)}", f"--Voila.ip={LOOPBACK}"]
    if token:
        cmd.append(f"--Voila.token={token}")
    if not open_browser:
        cmd.append("--no-browser")
    return cmd


def dashboard_url(port: int, token: str | None) -> str:
    return f"http://{LOOPBACK}:{port}/" + (f"?token={token}" if token else "")


def new_token() -> str:
    return secrets.token_urlsafe(24)


def serve(notebook: str | Path = DEFAULT_NOTEBOOK, port: int = 8866, token: str | None = None,
          open_browser: bool = False) -> int:
    """Run Voila in the foreground until Ctrl-C; returns its exit code."""
    try:
        import voila  # noqa: F401
    except ImportError:
        raise ConfigError("Voila is not installed: pip install voila") from None
    cmd = voila_command(notebook, port, token, open_browser)
    print(f"dashboard: {dashboard_url(port, token)}", flush=True)
    proc = subprocess.Popen(cmd)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        return proc.wait()


__all__ = ["DEFAULT_NOTEBOOK", "dashboard_url", "new_token", "serve", "voila_command"]
