"""Packaging: every Python package of the tree is listed for wheels, and the built-ins are
registered through the same entry-point group as third-party plugins."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def test_every_package_directory_is_listed() -> None:
    config = _pyproject()["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {".".join(("sslkit", *p.parent.relative_to(REPO / "sslkit").parts))
             for p in (REPO / "sslkit").rglob("__init__.py")}
    found |= {".".join(("sslkit_plugins", *p.parent.relative_to(REPO / "plugins").parts))
              for p in (REPO / "plugins").rglob("__init__.py")}
    assert found == listed
    assert config["package-dir"] == {"sslkit": "sslkit", "sslkit_plugins": "plugins"}


def test_builtins_use_the_public_entry_point_group() -> None:
    declared = _pyproject()["project"]["entry-points"]["sslkit"]
    installed = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="sslkit")
                 if ep.dist is not None and ep.dist.name == "sslkit"}
    assert installed == declared
    assert all(value.startswith("sslkit_plugins.") for value in declared.values())


def test_core_imports_no_plugin_module() -> None:
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "sslkit").rglob("*.py")
                 if "sslkit_plugins" in p.read_text(encoding="utf-8")]
    assert offenders == []
