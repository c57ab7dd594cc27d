"""Headless notebook runs: papermill into ``reports/<name>/<timestamp>.ipynb`` plus an offline HTML copy.

Parameters are checked at the boundary against the notebook's ``parameters``
cell (papermill's inspect API): an unknown name or a value of the wrong type
is refused before a kernel starts. A failed run keeps its output notebook
(papermill marks the failing cell) and returns a :class:`RunResult` that says
which cell failed and where the output is.
"""
from __future__ import annotations

import ast
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import ConfigError, did_you_mean

#: parameter names that look like credentials: papermill writes parameters into the output in plain text
SECRET_NAME = re.compile(r"(secret|passw|api_?key|token|private_?key|passphrase)", re.I)
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict}


@dataclass(frozen=True)
class NotebookParameter:
    """One name from a notebook's ``parameters`` cell: its expected type (None = any) and default source."""

    name: str
    type: type | None
    default: str
    help: str = ""

    @property
    def type_name(self) -> str:
        return self.type.__name__ if self.type else "any"


@dataclass
class RunResult:
    """What a run did. ``ok`` is False when a cell raised; ``output`` is kept either way."""

    notebook: Path
    output: Path
    html: Path | None
    parameters: dict[str, Any]
    ok: bool
    started_at: float
    ended_at: float
    error: str | None = None
    failed_cell: int | None = None
    failed_exec_count: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.ended_at - self.started_at

    def describe(self) -> str:
        """One paragraph for a terminal: status, failing cell, and where the outputs are."""
        where = f"output: {self.output}" + (f"\nhtml:   {self.html}" if self.html else "")
        if self.ok:
            return f"ok: {self.notebook.name} ran in {self.duration:.1f}s\n{where}"
        cell = f"cell {self.failed_cell}" if self.failed_cell is not None else "an unknown cell"
        if self.failed_exec_count is not None:
            cell += f" (In [{self.failed_exec_count}])"
        return f"failed: {self.notebook.name} stopped at {cell}: {self.error}\n{where}"


# -- parameters -----------------------------------------------------------------
def notebook_parameters(notebook: str | Path) -> dict[str, NotebookParameter]:
    """The names declared in the notebook's ``parameters`` cell, with their inferred types.

    papermill's inspect API reads the cell; names its line parser misses (e.g. a
    trailing comment with quotes in it) are filled in from the cell's Python syntax tree.
    """
    import logging

    from papermill.inspection import inspect_notebook

    path = _existing_notebook(notebook)
    pm_log = logging.getLogger("papermill")
    level, pm_log.level = pm_log.level, logging.ERROR  # its "Unable to parse line" warnings are handled below
    try:
        found = dict(inspect_notebook(str(path)))
    except Exception as exc:  # papermill raises assorted errors for unreadable notebooks
        raise ConfigError(f"Cannot read the parameters of {path}: {exc}. Is it a valid .ipynb file?") from exc
    finally:
        pm_log.level = level
    for name, info in _ast_parameters(path).items():
        found.setdefault(name, info)
    out: dict[str, NotebookParameter] = {}
    for name, info in found.items():
        default = str(info.get("default", "None"))
        out[name] = NotebookParameter(name, _declared_type(str(info.get("inferred_type_name", "None")), default), default, str(info.get("help") or ""))
    return out


def _ast_parameters(path: Path) -> dict[str, dict[str, str]]:
    """Top-level assignments of the first cell tagged 'parameters' (empty if it is not plain Python)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    cell = next((c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        return {}
    try:
        tree = ast.parse(cell.source)
    except SyntaxError:
        return {}
    out: dict[str, dict[str, str]] = {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            out[node.target.id] = {"inferred_type_name": ast.unparse(node.annotation), "default": ast.unparse(node.value)}
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            out[node.targets[0].id] = {"inferred_type_name": "None", "default": ast.unparse(node.value)}
    return out


def _declared_type(annotation: str, default: str) -> type | None:
    if annotation in _TYPES:
        return _TYPES[annotation]
    if annotation not in ("None", ""):
        return None  # Optional[...], unions and custom types: accept anything
    try:
        value = ast.literal_eval(default)
    except (ValueError, SyntaxError):
        return None
    return None if value is None else _TYPES.get(type(value).__name__)


def validate_parameters(notebook: str | Path, parameters: Mapping[str, Any] | None, from_text: bool = False) -> dict[str, Any]:
    """Check `parameters` against the notebook's parameters cell and return them typed.

    `from_text` says the values are command-line strings to convert to each
    parameter's type (``-p bars 50`` -> 50). Unknown names, values of the wrong
    type and secret-looking names are refused with a message that says how to fix it.
    """
    parameters = dict(parameters or {})
    if not parameters:
        return {}
    for key in parameters:
        if SECRET_NAME.search(str(key)):
            raise ConfigError(f"Refusing to pass {key!r}: parameters are written into the output notebook in plain text. "
                              "Keep credentials in the account store (`workbench accounts add`) and pass the account name.")
    declared = notebook_parameters(notebook)
    name = Path(notebook).name
    if not declared:
        raise ConfigError(f"{name} has no cell tagged 'parameters', so it takes no parameters. "
                          "Tag one cell 'parameters' (cell toolbar > property inspector > tags) or drop -p.")
    out: dict[str, Any] = {}
    for key, value in parameters.items():
        if key not in declared:
            raise ConfigError(f"{name} has no parameter {key!r}.{did_you_mean(key, declared)} "
                              f"Its parameters: {', '.join(declared)}.")
        out[key] = _coerce(declared[key], value, from_text, name)
    return out


def _coerce(param: NotebookParameter, value: Any, from_text: bool, nb_name: str) -> Any:
    want = param.type

    def wrong(got: str) -> ConfigError:
        return ConfigError(f"Parameter {param.name!r} of {nb_name} expects {_article(param.type_name)} "
                           f"(default {param.default}), got {got}.")

    if from_text and isinstance(value, str):
        if want is str:
            return value
        if want is bool:
            low = value.strip().lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
            raise wrong(f"{value!r} (use true or false)")
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                if want is None:
                    return value
                raise wrong(repr(value)) from None
    if want is None:
        return value
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if want is int and isinstance(value, float) and value.is_integer() and from_text:
        return int(value)
    if isinstance(value, bool) and want is not bool:
        raise wrong(repr(value))
    if not isinstance(value, want):
        raise wrong(f"{value!r} ({type(value).__name__})")
    return value


def _article(type_name: str) -> str:
    return ("an " if type_name[0] in "aeiou" else "a ") + type_name


def _existing_notebook(notebook: str | Path) -> Path:
    path = Path(notebook)
    if path.suffix != ".ipynb":
        raise ConfigError(f"{path} is not a notebook: give a .ipynb file.")
    if not path.is_file():
        near = did_you_mean(path.name, [p.name for p in path.parent.glob("*.ipynb")]) if path.parent.is_dir() else ""
        raise ConfigError(f"Notebook {path} does not exist.{near}")
    return path


# -- running --------------------------------------------------------------------
def output_path(notebook: str | Path, reports_dir: str | Path = "reports", now: datetime | None = None) -> Path:
    """``<reports_dir>/<notebook stem>/<UTC timestamp>.ipynb``, with a suffix if that name is taken."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    folder = Path(reports_dir) / Path(notebook).stem
    stamp = now.strftime(TIMESTAMP_FORMAT)
    path, n = folder / f"{stamp}.ipynb", 1
    while path.exists():
        n += 1
        path = folder / f"{stamp}-{n}.ipynb"
    return path


def run_notebook(
    notebook: str | Path,
    parameters: Mapping[str, Any] | None = None,
    reports_dir: str | Path = "reports",
    *,
    from_text: bool = False,
    output: str | Path | None = None,
    html: bool = True,
    cwd: str | Path | None = None,
    kernel_name: str | None = None,
    timeout: float | None = None,
    store_widget_state: bool = False,
    plotly_js: str = "inline",
    now: datetime | None = None,
) -> RunResult:
    """Execute `notebook` with papermill and export it to offline HTML.

    The kernel runs in `cwd` (default: the notebook's folder, as in Jupyter).
    `timeout` limits each cell (seconds). Widget state is not stored by
    default: it can add megabytes per FigureWidget. `plotly_js` is "inline" (one
    self-contained HTML file, ~5 MB with figures) or "shared" (one plotly.min.js
    beside the runs). Cell errors do not raise:
    check ``result.ok`` (bad parameters and missing notebooks do raise ConfigError).
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    path = _existing_notebook(notebook)
    params = validate_parameters(path, parameters, from_text=from_text)
    out = Path(output) if output else output_path(path, reports_dir, now)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = RunResult(path, out, None, params, ok=True, started_at=time.time(), ended_at=0.0)
    engine_kwargs: dict[str, Any] = {"store_widget_state": store_widget_state}
    if timeout is not None:
        engine_kwargs["execution_timeout"] = timeout
    try:
        pm.execute_notebook(str(path), str(out), parameters=params, kernel_name=kernel_name, progress_bar=False,
                            cwd=str(cwd or path.parent.resolve()), **engine_kwargs)
    except PapermillExecutionError as exc:
        result.ok = False
        result.failed_cell = _failed_cell(out)  # index in the output, which has papermill's marker cell on top
        result.failed_exec_count = exc.exec_count
        result.error = f"{exc.ename}: {exc.evalue}"
    except Exception as exc:  # kernel died, cell timeout, kernel missing: still a failed run, not a crash
        result.ok = False
        result.error = f"{type(exc).__name__}: {exc}"
        result.failed_cell = _failed_cell(out)
    result.ended_at = time.time()
    if html and out.exists():
        try:
            result.html = export_html(out, plotly_js=plotly_js)
        except Exception as exc:  # the run's outcome stands even if the export fails
            result.notes.append(f"HTML export failed: {type(exc).__name__}: {exc}")
    elif not out.exists():
        result.notes.append("papermill wrote no output notebook (the kernel did not start?)")
    return result


def _failed_cell(output: Path) -> int | None:
    """Index (in the output notebook) of the first cell with an error output."""
    if not output.exists():
        return None
    import nbformat

    nb = nbformat.read(output, as_version=4)
    for i, cell in enumerate(nb.cells):
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return i
    return None


# -- offline HTML -----------------------------------------------------------------
#: the lab template without the CDN scripts (require.js, MathJax, mermaid, widget embedding)
_OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""
PLOTLY_MIME = "application/vnd.plotly.v1+json"
REMOTE_ASSET = re.compile(r"<script\b[^>]*\bsrc=[\"']?(?:https?:)?//[^>]*>\s*</script>|<link\b[^>]*\bhref=[\"']?(?:https?:)?//[^>]*>", re.I)


def export_html(notebook: str | Path, html_path: str | Path | None = None, plotly_js: str = "inline") -> Path:
    """Write an HTML copy of an executed notebook that renders with no network.

    Plotly outputs become static divs with plotly.js inlined once (or, with
    ``plotly_js="shared"``, loaded from one plotly.min.js beside the file); CDN scripts
    of the stock template are left out; widget views show their text fallback.
    """
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter

    if plotly_js not in ("inline", "shared"):
        raise ConfigError(f"plotly_js must be 'inline' or 'shared', got {plotly_js!r}.")
    src = Path(notebook)
    dest = Path(html_path) if html_path else src.with_suffix(".html")
    nb = nbformat.read(src, as_version=4)
    nb.metadata.pop("widgets", None)
    if _inline_plotly(nb, include=True if plotly_js == "inline" else "plotly.min.js") and plotly_js == "shared":
        shared = dest.parent / "plotly.min.js"
        if not shared.exists():
            from plotly.offline import get_plotlyjs

            shared.write_text(get_plotlyjs(), encoding="utf-8")
    exporter = HTMLExporter(extra_loaders=[jinja2.DictLoader({"offline.html.j2": _OFFLINE_TEMPLATE})],
                            template_file="offline.html.j2")
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": src.stem}})
    body = REMOTE_ASSET.sub("", body)
    dest.write_text(body, encoding="utf-8")
    return dest


def _inline_plotly(nb: Any, include: bool | str = True) -> bool:
    """Replace plotly JSON outputs by static HTML; plotly.js goes with the first (`include`). True if any."""
    import plotly.io as pio

    first = True
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data") or {}
            if PLOTLY_MIME not in data:
                continue
            fig = data[PLOTLY_MIME]
            html = pio.to_html(fig, include_plotlyjs=include if first else False, full_html=False, validate=False, config={"displaylogo": False})
            first = False
            out["data"] = {"text/html": html, "text/plain": data.get("text/plain", "<plotly figure>")}
    return not first


def remote_assets(html: str) -> list[str]:
    """Script/stylesheet tags in `html` that would load from the network (empty when it opens offline)."""
    return REMOTE_ASSET.findall(html)


__all__ = ["NotebookParameter", "RunResult", "export_html", "notebook_parameters", "output_path",
           "remote_assets", "run_notebook", "validate_parameters"]
