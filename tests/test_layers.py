"""Imports point one way: models <- realtime <- gui <- bench, tools, tests.

models is torch and data only; realtime (capture, features, extraction, serving) builds on
models; gui on both. An entry point (a package's ``__main__.py``) sits above the packages
and may hand over to another (``python -m realtime --gui`` opens ``gui``); nothing imports
an entry point but another entry point or a test. Imports inside functions count too.
"""

import ast
from pathlib import Path

from tests.conftest import ROOT

LAYERS = {"models": 0, "realtime": 1, "gui": 2, "bench": 3, "tools": 3, "tests": 3}


def imports(path: Path, package: str | None = None) -> list[tuple[int, str]]:
    """(line, module) for every import in the file (the package it belongs to: from its
    place in the repository), relative ones made absolute."""
    package = package or ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.append((node.lineno, module))
    return out


def test_every_import_points_down_the_layers():
    wrong = []
    for package, layer in LAYERS.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            entry = path.name == "__main__.py"
            for line, module in imports(path):
                top = module.split(".")[0]
                if top not in LAYERS or top == package:
                    continue
                if LAYERS[top] > layer and not entry:
                    wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module} (a higher layer)")
                if module.endswith("__main__") and not (entry or package == "tests"):
                    wrong.append(f"{path.relative_to(ROOT)}:{line} imports the entry point {module}")
    assert wrong == []


def test_the_check_sees_imports_inside_functions_and_relative_ones(tmp_path):
    # the rule above would pass vacuously if the scan missed the imports that matter
    found = dict((m, n) for n, m in imports(ROOT / "realtime" / "__main__.py"))
    assert "gui.__main__" in found and "realtime.cli" in found  # both inside main()
    sample = tmp_path / "probe.py"
    sample.write_text("def f():\n    from .config import X\n    from ..realtime import cli\n    import gui.window\n")
    assert [m for _, m in imports(sample, "models")] == ["models.config", "realtime", "gui.window"]
