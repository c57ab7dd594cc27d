"""One exception hierarchy for workbench.

Every error a user can cause is raised at the boundary, names what was wrong
and says how to fix it. Catch :class:`WorkbenchError` to handle them all.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class WorkbenchError(Exception):
    """Base class of every error workbench raises on purpose."""


class ConfigError(WorkbenchError, ValueError):
    """A configuration, parameter or argument is invalid."""


class DataError(WorkbenchError, ValueError):
    """Market data failed validation or could not be loaded."""


class ParamsError(WorkbenchError, ValueError):
    """A parameter file is missing, corrupt or inconsistent."""


class StoreError(WorkbenchError):
    """The store is unavailable, locked, full or corrupt."""


class VenueError(WorkbenchError):
    """A venue refused or failed a request.

    Raised as is, the venue may not have answered: an order sent may or may not have reached it.
    """


class PermanentVenueError(VenueError):
    """The venue answered and refused, for a reason that retrying cannot fix (`kind`: ccxt's error class name)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class LiveTradingRefused(WorkbenchError):
    """A live order was attempted without a live account and explicit confirmation."""


class SecretsError(WorkbenchError):
    """Account secrets could not be decrypted or stored."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ' Did you mean 'x'?' for the closest choice, or ''."""
    match = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" Did you mean {match[0]!r}?" if match else ""


def unknown(kind: str, word: str, choices: Iterable[str]) -> ConfigError:
    """A ConfigError for an unknown name, listing the valid ones."""
    choices = sorted(str(c) for c in choices)
    return ConfigError(
        f"Unknown {kind} {word!r}.{did_you_mean(word, choices)} Valid {kind}s: {', '.join(choices)}."
    )
