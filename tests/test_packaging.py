"""Every file the package reads at run time ships in it: each non-Python file under
src/tokenward matches a package-data pattern of pyproject.toml (a wheel install would
otherwise miss it, while the editable install the tests use still finds it)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "tokenward"


def test_every_data_file_is_declared_as_package_data() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["tokenward"]
    declared = {p for pattern in patterns for p in PACKAGE.glob(pattern)}
    data = {
        p for p in PACKAGE.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    }  # fmt: skip
    missing = sorted(str(p.relative_to(PACKAGE)) for p in data - declared)
    assert not missing, f"add to [tool.setuptools.package-data] in pyproject.toml: {missing}"
