"""workbench.startup: the slow IRI grammar module is deferred until used, and validation is unchanged."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

CHECK = """
import json, sys
{defer}
from jsonschema import Draft7Validator
deferred = type(sys.modules.get("rfc3987_syntax")).__name__ == "_Deferred" and "lark" not in sys.modules
fc = Draft7Validator.FORMAT_CHECKER
samples = ["http://example.com/a?b#c", "not an iri", "http://[::1]:80/", "a b", "urn:isbn:0451450523", ""]
verdicts = [[fc.conforms(s, f) for f in ("iri", "iri-reference")] for s in samples]
print(json.dumps({{"deferred": deferred, "verdicts": verdicts, "real_now": type(sys.modules["rfc3987_syntax"]).__name__}}))
"""


def run(defer: bool) -> dict:
    code = CHECK.format(defer="import workbench.startup as s; s.defer_slow_imports()" if defer else "")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_jsonschema_imports_without_building_the_grammar_and_validates_iris_the_same():
    pytest.importorskip("rfc3987_syntax", reason="the deferral only matters where jsonschema's format-nongpl extra is installed")
    deferred, eager = run(True), run(False)
    assert deferred["deferred"] and not eager["deferred"]
    assert deferred["verdicts"] == eager["verdicts"]
    assert [False, False] in eager["verdicts"] and [True, True] in eager["verdicts"], "the samples exercise both outcomes"
    assert deferred["real_now"] == "module", "the first IRI check loaded the real module in its place"


def test_defer_is_idempotent_and_skips_modules_already_imported(monkeypatch):
    from workbench import startup

    monkeypatch.setattr(startup, "_checked", set())
    monkeypatch.setitem(startup.DEFERRED, "json", ("loads",))  # installed and already imported
    monkeypatch.setitem(startup.DEFERRED, "no_such_module_wb", ("f",))
    before = sys.modules["json"]
    assert "json" not in startup.defer_slow_imports()
    assert sys.modules["json"] is before and "no_such_module_wb" not in sys.modules
    assert startup.defer_slow_imports() == []
