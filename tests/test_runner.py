"""Headless runs: papermill output + offline HTML, failures kept and reported, parameters checked at the boundary."""
from __future__ import annotations

import json
import re
import shlex
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import pytest

import workbench.cli as cli
from workbench import dashboard
from workbench.errors import ConfigError
from workbench.runner import export_html, notebook_parameters, output_path, remote_assets, validate_parameters

TINY = Path(__file__).parent / "notebooks" / "tiny.ipynb"


@pytest.fixture
def main(monkeypatch):
    """workbench's own main(), with the run/schedule/report/dashboard commands registered."""
    if "workbench.cli.run" not in cli.COMMAND_MODULES:
        monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "workbench.cli.run"))
    return cli.main


def outputs_text(nb_path: Path) -> str:
    nb = nbformat.read(nb_path, as_version=4)
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") + out.get("evalue", "") + json.dumps(out.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


# -- parameters -------------------------------------------------------------------
def test_parameter_types_come_from_the_parameters_cell():
    params = notebook_parameters(TINY)
    assert {k: p.type_name for k, p in params.items()} == {
        "symbol": "str", "bars": "int", "scale": "float", "fail": "bool", "tags": "list", "note": "any"}


def test_cli_text_values_are_converted_to_the_declared_types():
    got = validate_parameters(TINY, {"bars": "7", "scale": "2", "fail": "yes", "tags": '["x", "y"]', "symbol": "10",
                                     "note": "{'a': 1}"}, from_text=True)
    assert got == {"bars": 7, "scale": 2.0, "fail": True, "tags": ["x", "y"], "symbol": "10", "note": {"a": 1}}
    assert isinstance(got["scale"], float)


def test_unknown_parameter_is_refused_with_did_you_mean():
    with pytest.raises(ConfigError) as err:
        validate_parameters(TINY, {"bar": 5})
    msg = str(err.value)
    assert "no parameter 'bar'" in msg and "Did you mean 'bars'?" in msg and "symbol" in msg


@pytest.mark.parametrize("params, from_text, fragment", [
    ({"bars": "many"}, True, "expects an int (default 20), got 'many'"),
    ({"bars": "5"}, False, "expects an int"),
    ({"bars": 2.5}, False, "expects an int"),
    ({"bars": True}, False, "expects an int"),
    ({"fail": "maybe"}, True, "use true or false"),
    ({"tags": "{}"}, True, "expects a list"),
    ({"scale": "x1"}, True, "expects a float"),
])
def test_wrong_type_is_refused_with_a_clear_message(params, from_text, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        validate_parameters(TINY, params, from_text=from_text)


def test_secret_looking_parameters_are_refused(tmp_path):
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}})
    cell = nbformat.v4.new_code_cell("api_key = ''\nsymbol = 'BTC/USDT'")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell]
    path = tmp_path / "keyed.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(ConfigError, match="account store"):
        validate_parameters(path, {"api_key": "abc"})
    assert validate_parameters(path, {"symbol": "ETH/USDT"}) == {"symbol": "ETH/USDT"}


def test_parameters_papermill_cannot_parse_are_still_known(tmp_path):
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}})
    cell = nbformat.v4.new_code_cell("store_path = \"\"   # '' = the default store\nbars = 10  # bars of the 'sample'")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell]
    nbformat.write(nb, tmp_path / "quoted.ipynb")
    assert {k: p.type_name for k, p in notebook_parameters(tmp_path / "quoted.ipynb").items()} == {"store_path": "str", "bars": "int"}
    assert validate_parameters(tmp_path / "quoted.ipynb", {"bars": "3"}, from_text=True) == {"bars": 3}


def test_notebook_without_parameters_cell_or_missing_is_refused(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(nb, tmp_path / "plain.ipynb")
    with pytest.raises(ConfigError, match="tagged 'parameters'"):
        validate_parameters(tmp_path / "plain.ipynb", {"x": 2})
    assert validate_parameters(tmp_path / "plain.ipynb", {}) == {}
    with pytest.raises(ConfigError, match="Did you mean 'plain.ipynb'"):
        validate_parameters(tmp_path / "plan.ipynb", {"x": 2})


def test_output_path_is_per_notebook_and_never_overwrites(tmp_path):
    now = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    first = output_path(TINY, tmp_path, now)
    assert first == tmp_path / "tiny" / "20250304T050607Z.ipynb"
    first.parent.mkdir(parents=True)
    first.write_text("{}")
    assert output_path(TINY, tmp_path, now).name == "20250304T050607Z-2.ipynb"


# -- runs -------------------------------------------------------------------------
def test_run_writes_notebook_and_offline_html(main, tmp_path, capsys):
    rc = main(["run", str(TINY), "-p", "bars", "5", "-p", "symbol", "ETH/USDT", "--reports-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    [nb_path] = (tmp_path / "tiny").glob("*.ipynb")
    assert str(nb_path) in out
    text = outputs_text(nb_path)
    assert "rows 5 symbol ETH/USDT" in text and "done 15.0" in text  # 1.5 * (0+...+4)
    nb = nbformat.read(nb_path, as_version=4)
    assert "widgets" not in nb.metadata  # widget state is off by default
    html = nb_path.with_suffix(".html").read_text()
    assert remote_assets(html) == []
    assert not re.search(r"<script[^>]+src=[\"']?(https?:)?//", html)
    assert html.count("Plotly.newPlot") == 1 and "window.Plotly" in html  # plotly.js inlined, figure drawn from it


def test_failed_run_keeps_notebook_shows_cell_and_exits_nonzero(main, tmp_path, capsys):
    rc = main(["run", str(TINY), "-p", "fail", "true", "--reports-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1
    [nb_path] = (tmp_path / "tiny").glob("*.ipynb")
    assert str(nb_path) in err and "RuntimeError: boom requested for BTC/USDT" in err
    cell = int(re.search(r"stopped at cell (\d+)", err).group(1))
    nb = nbformat.read(nb_path, as_version=4)
    assert any(o.output_type == "error" for o in nb.cells[cell].outputs)
    assert nb.metadata.papermill.exception is True
    assert "done" not in outputs_text(nb_path)  # cells after the failure did not run
    assert "boom requested" in nb_path.with_suffix(".html").read_text()


def test_bad_parameter_exits_2_before_any_kernel(main, tmp_path, capsys):
    assert main(["run", str(TINY), "-p", "sybmol", "X", "--reports-dir", str(tmp_path)]) == 2
    assert "Did you mean 'symbol'?" in capsys.readouterr().err
    assert main(["run", str(TINY), "-p", "bars", "1", "-p", "bars", "2", "--reports-dir", str(tmp_path)]) == 2
    assert not (tmp_path / "tiny").exists()


def test_export_html_replaces_cdn_plotly_and_template_scripts(tmp_path):
    nb = nbformat.v4.new_notebook()
    fig = {"data": [{"type": "bar", "x": [1, 2], "y": [3, 4]}], "layout": {}}
    cdn = '<script src="https://cdn.plot.ly/plotly-2.0.min.js"></script><div>old</div>'

    def cell():
        return nbformat.v4.new_code_cell("fig", outputs=[nbformat.v4.new_output(
            "display_data", data={"application/vnd.plotly.v1+json": fig, "text/html": cdn, "text/plain": "Figure"})])

    nb.cells = [nbformat.v4.new_markdown_cell("$x^2$"), cell(), cell()]
    nbformat.write(nb, tmp_path / "f.ipynb")
    html = export_html(tmp_path / "f.ipynb").read_text()
    assert remote_assets(html) == [] and "cdn.plot.ly/plotly-2.0" not in html
    assert html.count("Plotly.newPlot") == 2 and html.count("window.PlotlyConfig") == 1  # plotly.js once


def test_export_html_shared_plotly_js_is_one_local_file(tmp_path):
    nb = nbformat.v4.new_notebook()
    fig = {"data": [{"type": "bar", "x": [1], "y": [2]}], "layout": {}}
    nb.cells = [nbformat.v4.new_code_cell("fig", outputs=[nbformat.v4.new_output(
        "display_data", data={"application/vnd.plotly.v1+json": fig, "text/plain": "Figure"})])]
    nbformat.write(nb, tmp_path / "a.ipynb")
    html = export_html(tmp_path / "a.ipynb", plotly_js="shared").read_text()
    assert 'src="plotly.min.js"' in html and remote_assets(html) == []
    shared_js = (tmp_path / "plotly.min.js").stat().st_size
    inline = export_html(tmp_path / "a.ipynb", tmp_path / "inline.html").read_text()
    assert shared_js > 1_000_000 and len(inline) - len(html) > shared_js * 0.9  # the bundle moved out of the page
    with pytest.raises(ConfigError, match="inline' or 'shared"):
        export_html(tmp_path / "a.ipynb", plotly_js="cdn")


# -- dashboard --------------------------------------------------------------------
def test_dashboard_command_is_voila_on_loopback_with_token(tmp_path):
    nb = tmp_path / "03_live_monitor.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), nb)
    cmd = dashboard.voila_command(nb, port=9001, token="tok123")
    assert cmd[1:4] == ["-m", "voila", str(nb)]
    assert "--Voila.ip=127.0.0.1" in cmd and "--port=9001" in cmd and "--Voila.token=tok123" in cmd
    assert "--no-browser" in cmd
    assert not any("0.0.0.0" in c for c in cmd)
    with pytest.raises(ConfigError):
        dashboard.voila_command(tmp_path / "missing.ipynb")
    with pytest.raises(ConfigError):
        dashboard.voila_command(nb, port=70000)


def test_dashboard_cli_prints_loopback_command_with_a_fresh_token(main, tmp_path, capsys):
    nb = tmp_path / "m.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), nb)
    assert main(["dashboard", str(nb), "--port", "9002", "--print-command"]) == 0
    args = shlex.split(capsys.readouterr().out)
    token = [a for a in args if a.startswith("--Voila.token=")][0].split("=", 1)[1]
    assert len(token) >= 24 and "--Voila.ip=127.0.0.1" in args
    assert main(["dashboard", str(nb), "--no-token", "--print-command"]) == 0
    assert "--Voila.token" not in capsys.readouterr().out
