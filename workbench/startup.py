"""Start-up trims for processes that run workbench: defer third-party imports that cost seconds for nothing.

plotly imports nbformat to render figures in Jupyter; nbformat imports jsonschema; jsonschema
imports ``rfc3987_syntax`` eagerly when it is installed (its ``format-nongpl`` extra, which Jupyter
pulls in), and that module builds ~38 Earley parsers at import: 1.5-3.5 s of every notebook kernel
that shows a figure, for the ``iri`` format checks that no notebook schema uses
(python-jsonschema/jsonschema#1428). :func:`defer_slow_imports` puts a stand-in module in its place
whose attributes import the real one on first use, so validation behaves the same and the cost
moves to the first IRI check, which in practice never comes.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

DEFERRED: dict[str, tuple[str, ...]] = {"rfc3987_syntax": ("is_valid_syntax",)}
"""module -> the functions importers take from it by name (``from m import f`` reads them at once)."""

_checked: set[str] = set()


class _Deferred(types.ModuleType):
    """A module that imports the real one (replacing itself in sys.modules) when an attribute is first read."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        return getattr(load_real(self.__name__), attr)


def load_real(name: str) -> types.ModuleType:
    """Import the real module `name`, replacing its stand-in."""
    if isinstance(sys.modules.get(name), _Deferred):
        sys.modules.pop(name, None)
    return importlib.import_module(name)


def _lazy_function(module: str, name: str) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(load_real(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"{module}.{name}, imported on first call."
    return call


def defer_slow_imports() -> list[str]:
    """Install stand-ins for :data:`DEFERRED` modules that are installed but not imported yet; returns their names.

    Cheap (one spec lookup per module, then nothing) and idempotent. Call it early in a process, before
    plotly renders a figure.
    """
    done = []
    for name, functions in DEFERRED.items():
        if name in _checked:
            continue
        _checked.add(name)
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue
        stub = _Deferred(name, "stand-in: the real module loads on first attribute access (workbench.startup)")
        stub.__spec__ = spec
        if spec.submodule_search_locations is not None:
            stub.__path__ = list(spec.submodule_search_locations)
        for fn in functions:
            setattr(stub, fn, _lazy_function(name, fn))
        sys.modules[name] = stub
        done.append(name)
    return done
