"""The import graph points one way: core <- pipelines <- monitoring, registry <- serving <- flows
<- driftloop (the CLI, stack and application). A module imports only its own package and the
packages below it, and the floor loads without Prefect, the service or a model."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

#: package -> its layer; a module may import packages of a lower layer only (and its own)
LAYERS = {
    "core": 0,
    "pipelines": 1,
    "monitoring": 2,
    "registry": 2,
    "serving": 3,
    "flows": 4,
    "driftloop": 5,
}


def imported_packages(path: Path) -> set[str]:
    """Our top-level packages that one module imports, at any depth of its code."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(LAYERS)


def upward_imports() -> list[str]:
    wrong = []
    for package, layer in LAYERS.items():
        for path in sorted((REPO / package).rglob("*.py")):
            for other in sorted(imported_packages(path) - {package}):
                if LAYERS[other] >= layer:
                    wrong.append(f"{path.relative_to(REPO)} imports {other}")
    return wrong


def test_every_import_points_down() -> None:
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from flows.train import train\n")
    assert imported_packages(module) == {"flows"}


def test_floor_pipelines_and_monitoring_load_without_prefect_and_config_builds_nothing() -> None:
    """Import every module of core/, pipelines/ and monitoring/, then load the shipped config:
    Prefect, the service and scikit-learn's estimators stay out until something needs them."""
    script = """
import importlib, pkgutil, sys
from pathlib import Path
import core.config
core.config.load_config(Path('driftloop.yaml'))
loaded_by_config = {m.split('.')[0] for m in sys.modules}
for package in ("core", "pipelines", "monitoring"):
    module = importlib.import_module(package)
    for info in pkgutil.walk_packages(module.__path__, package + "."):
        if ".migrations" not in info.name:
            importlib.import_module(info.name)
print(sorted({"sklearn", "serving", "flows", "registry"} & loaded_by_config))
print("prefect" in sys.modules, "serving" in sys.modules, "flows" in sys.modules)
"""
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[0] == "[]", f"loading the config imported {out[0]}"
    assert out[1] == "False False False", (
        "core/pipelines/monitoring pulled in prefect/serving/flows"
    )
