"""``sslkit new-plugin``: names, files, and a scaffolded project that installs, registers and passes
its own tests (pip install --target, then its pytest suite in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sslkit.cli.main import main
from sslkit.errors import SSLKitError
from sslkit.scaffold import PluginNames, render, scaffold_plugin


def test_names_are_derived_from_the_component_name() -> None:
    names = PluginNames.derive("cosine_distill", "loss")
    assert (names.dist, names.package, names.cls) == ("sslkit-cosine-distill", "sslkit_cosine_distill",
                                                      "CosineDistillLoss")
    assert PluginNames.derive("sslkit_ratio", "masker").dist == "sslkit-ratio"
    assert PluginNames.derive("exact_masker", "masker").cls == "ExactMasker"
    for bad in ("Cosine", "my-loss", "2loss", "class", ""):
        with pytest.raises(SSLKitError, match="must be a lowercase Python identifier"):
            PluginNames.derive(bad, "loss")
    with pytest.raises(SSLKitError, match="no template for kind 'backbone'; available: loss, masker"):
        PluginNames.derive("x", "backbone")


@pytest.mark.parametrize("kind", ["loss", "masker"])
def test_rendered_files_declare_the_entry_point_and_hook(kind: str) -> None:
    files = render(PluginNames.derive("my_thing", kind))
    assert set(files) == {"pyproject.toml", "README.md", "sslkit_my_thing/__init__.py", f"sslkit_my_thing/{kind}.py",
                          f"tests/test_my_thing_{kind}.py", "recipes/my_thing_tiny.yaml"}
    assert '[project.entry-points.sslkit]\nmy_thing = "sslkit_my_thing"' in files["pyproject.toml"]
    hook = {"loss": "register_losses", "masker": "register_maskers"}[kind]
    assert f"def {hook}(register" in files["sslkit_my_thing/__init__.py"]
    for path, text in files.items():
        assert "$" not in text, f"{path}: a placeholder was left unsubstituted"
        if path.endswith(".py"):
            compile(text, path, "exec")  # valid Python


def test_cli_creates_the_project_and_refuses_to_overwrite(tmp_path: Path, capsys) -> None:
    target = tmp_path / "proj"
    assert main(["new-plugin", "cosine_distill", "--dir", str(target)]) == 0
    assert "created sslkit-cosine-distill" in capsys.readouterr().out
    assert (target / "sslkit_cosine_distill" / "loss.py").is_file()
    assert main(["new-plugin", "cosine_distill", "--dir", str(target)]) == 1
    assert "already exists and is not an empty directory" in capsys.readouterr().err


def _install(sources: list[Path], site: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(site), *map(str, sources)], check=True, capture_output=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "kind"), [("cosine_distill", "loss"), ("exact_ratio", "masker")])
def test_scaffolded_project_installs_registers_and_passes_its_tests(tmp_path: Path, name: str, kind: str) -> None:
    project, names = scaffold_plugin(name, kind, tmp_path / "project")
    site = tmp_path / "site"
    _install([project], site)
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"}
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project, env=env,
                           capture_output=True, text=True, timeout=600)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-3000:]
    assert "8 passed" in tests.stdout
    listing = subprocess.run([sys.executable, "-m", "sslkit", "plugins", "--kind", kind, "--json", name], env=env,
                             capture_output=True, text=True, timeout=300)
    assert listing.returncode == 0, listing.stderr
    [row] = [r for r in json.loads(listing.stdout) if r["kind"] == kind]
    assert (row["name"], row["provider"], row["provider_version"]) == (name, names.dist, "0.1.0")
