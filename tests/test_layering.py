"""Imports point one way: schemas <- emitters, schemas <- processors; and importing does no work."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
FORBIDDEN = {
    "schemas": {"emitters", "processors", "redis", "psutil", "faust"},
    "emitters": {"processors", "faust"},
    "processors": {"emitters"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_one_way(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in (ROOT / package).rglob("*.py")
        if imported_packages(path) & FORBIDDEN[package]
    }
    assert offenders == {}


def test_importing_the_packages_reads_no_environment_and_starts_no_thread() -> None:
    probe = (
        "import os, threading\n"
        "class Spy(dict):\n"
        "    def __getitem__(self, k):\n"
        "        if k.startswith('PIPEPULSE'): raise SystemExit('read ' + k)\n"
        "        return super().__getitem__(k)\n"
        "    def get(self, k, d=None):\n"
        "        if k.startswith('PIPEPULSE'): raise SystemExit('read ' + k)\n"
        "        return super().get(k, d)\n"
        "os.environ = Spy(os.environ)\n"
        "import schemas, emitters, processors, processors.cli\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PIPEPULSE_REDIS_URL": "redis://bad"})
    assert result.returncode == 0, result.stderr + result.stdout


def test_faust_is_imported_by_the_engines_app_module_only() -> None:
    """The processors stay pure: the Faust engine's one module wraps them, and nothing else needs faust installed."""
    importers = {str(path.relative_to(ROOT)) for package in FORBIDDEN for path in (ROOT / package).rglob("*.py") if "faust" in imported_packages(path)}
    assert importers == {"processors/scaleout/app.py"}
