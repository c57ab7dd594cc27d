"""On-disk compile caching for the vectorbt kernels that ship without it, so a second process pays no compile.

vectorbt compiles ``simulate_from_signals_nb`` (behind ``Portfolio.from_signals``) without
``cache=True``: every new process (a notebook kernel, a CLI run, a test worker) spends 8-15 s
compiling it, once per signature (long-only, short-only and long/short signals are three).
numba's ``Dispatcher.enable_caching()`` turns its on-disk cache on; the machine code then loads
in well under a second and runs identically (same LLVM output, byte-equal records).

The cache lives where numba puts it: beside vectorbt's sources (``__pycache__``) when
site-packages is writable, else numba's per-user cache folder; ``NUMBA_CACHE_DIR`` moves it.
numba keys it on the source file's timestamp, so upgrading vectorbt recompiles once.

Only kernels whose arguments are arrays and scalars are listed: a dispatcher that takes another
jitted function as argument (``reduce_mapped_nb(..., reduce_func_nb)``) is keyed by that function
object, never hits in a new process and would grow its index on every run.
"""
from __future__ import annotations

import importlib
import warnings
from typing import Any

VECTORBT_KERNELS: tuple[str, ...] = ("vectorbt.portfolio.nb:simulate_from_signals_nb",)

_done: dict[str, bool] = {}


def enable_disk_cache(dispatcher: Any) -> bool:
    """Turn on numba's on-disk cache for one jitted function; False if it is not a dispatcher or cannot cache."""
    from numba.core.caching import NullCache

    if not hasattr(dispatcher, "enable_caching"):  # NUMBA_DISABLE_JIT, or a plain function
        return False
    if not isinstance(getattr(dispatcher, "_cache", None), NullCache):
        return True  # already caching (declared cache=True, or enabled before)
    try:
        dispatcher.enable_caching()
    except RuntimeError as exc:  # numba found no writable place for the cache
        warnings.warn(
            f"numba cannot cache {dispatcher.py_func.__qualname__}: {exc}. Set NUMBA_CACHE_DIR to a writable "
            "folder, or every new process compiles it again (about 10 s).",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    return True


def cache_vectorbt_kernels() -> dict[str, bool]:
    """Enable the on-disk cache for each of :data:`VECTORBT_KERNELS` (idempotent, cheap after the first call).

    Returns ``{"module:function": cached}``; a kernel missing from the installed vectorbt is reported False.
    """
    for name in VECTORBT_KERNELS:
        if name in _done:
            continue
        module, attr = name.split(":")
        try:
            fn = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            _done[name] = False
            continue
        _done[name] = enable_disk_cache(fn)
    return dict(_done)
