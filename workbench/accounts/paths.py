"""Where workbench keeps its files: one home folder for store, accounts and cache.

Every module that needs the home folder should call :func:`home_dir` so the
CLI's ``--home``, the ``WORKBENCH_HOME`` variable and the default agree.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

HOME_ENV = "WORKBENCH_HOME"
DEFAULT_HOME = ".workbench"
ACCOUNTS_FILE = "accounts.json"


def home_dir(explicit: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The workbench home: `explicit` (e.g. ``--home``), else ``$WORKBENCH_HOME``, else ``./.workbench``.

    Returned absolute, not created: writers create it when they first write.
    """
    env = os.environ if environ is None else environ
    raw = explicit if explicit not in (None, "") else (env.get(HOME_ENV) or DEFAULT_HOME)
    return Path(raw).expanduser().absolute()


def accounts_path(explicit_home: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """``<home>/accounts.json``, the default account store."""
    return home_dir(explicit_home, environ) / ACCOUNTS_FILE
