"""``sslkit new-plugin``: names, files, and a scaffolded project that installs, registers and passes
its own tests (pip install --target, then its pytest suite in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from sslkit.cli.main import main
from sslkit.errors import SSLKitError
from sslkit.scaffold import PluginNames, default_summary, render, scaffold_plugin


def test_names_are_derived_from_the_component_name() -> None:
    names = PluginNames.derive("cosine_distill", "loss")
    assert (names.dist, names.package, names.cls) == ("sslkit-cosine-distill", "sslkit_cosine_distill",
                                                      "CosineDistillLoss")
    assert PluginNames.derive("sslkit_ratio", "masker").dist == "sslkit-ratio"
    assert PluginNames.derive("exact_masker", "masker").cls == "ExactMasker"
    for bad in ("Cosine", "my loss", "2loss", "class", "", "my-", "-loss", "my.loss"):
        with pytest.raises(SSLKitError, match="must be lowercase letters and digits, in words joined by"):
            PluginNames.derive(bad, "loss")


def test_a_hyphenated_name_gives_the_names_of_its_underscored_form() -> None:
    names = PluginNames.derive("my-loss", "loss")
    assert names == PluginNames.derive("my_loss", "loss")
    assert (names.name, names.dist, names.package, names.cls) == ("my_loss", "sslkit-my-loss", "sslkit_my_loss",
                                                                  "MyLoss")
    assert PluginNames.derive("sslkit-exact-ratio", "masker").package == "sslkit_exact_ratio"
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


def _described_summaries(files: dict[str, str], names: PluginNames) -> list[str]:
    """Every place the project states its summary: pyproject, the README's first paragraph, registration."""
    registration = files[f"{names.package}/__init__.py"].split("summary=")[1].split(",\n")[0]
    return [tomllib.loads(files["pyproject.toml"])["project"]["description"],
            files["README.md"].split("\n\n")[1], json.loads(registration)]


@pytest.mark.parametrize("kind", ["loss", "masker"])
def test_summary_names_the_component_and_not_the_template_method(kind: str) -> None:
    names = PluginNames.derive("my_thing", kind)
    files = render(names)
    assert _described_summaries(files, names) == [default_summary("my_thing", kind)] * 3
    assert default_summary("my_thing", kind) == f"The sslkit {kind} 'my_thing'."
    template_words = {"loss": ("cosine", "distillation"), "masker": ("uniformly random", "round(ratio")}[kind]
    for path in ("pyproject.toml", "README.md", f"{names.package}/__init__.py"):
        assert not any(word in files[path].lower() for word in template_words), path
    custom = 'Variance term of the "global" batch: a \\ b'
    files = render(names, custom)
    assert _described_summaries(files, names) == [custom] * 3
    compile(files[f"{names.package}/__init__.py"], "__init__.py", "exec")
    with pytest.raises(SSLKitError, match="must be one non-empty line"):
        render(names, "two\nlines")


def test_cli_creates_the_project_and_refuses_to_overwrite(tmp_path: Path, capsys) -> None:
    target = tmp_path / "proj"
    assert main(["new-plugin", "cosine_distill", "--dir", str(target)]) == 0
    assert "created sslkit-cosine-distill" in capsys.readouterr().out
    assert (target / "sslkit_cosine_distill" / "loss.py").is_file()
    assert main(["new-plugin", "cosine_distill", "--dir", str(target)]) == 1
    assert "already exists and is not an empty directory" in capsys.readouterr().err


def test_cli_accepts_the_documented_hyphenated_name_and_a_summary(tmp_path: Path, capsys,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["new-plugin", "my-loss", "--summary", "VICReg variance and covariance terms."]) == 0
    assert "created sslkit-my-loss" in capsys.readouterr().out
    project = tmp_path / "sslkit-my-loss"
    assert (project / "sslkit_my_loss" / "loss.py").is_file()
    assert (project / "tests" / "test_my_loss_loss.py").is_file()
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["description"] == "VICReg variance and covariance terms."
    assert pyproject["project"]["entry-points"]["sslkit"] == {"my_loss": "sslkit_my_loss"}


def _install(sources: list[Path], site: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(site), *map(str, sources)], check=True, capture_output=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "kind"), [("cosine-distill", "loss"), ("exact_ratio", "masker")])
def test_scaffolded_project_installs_registers_and_passes_its_tests(tmp_path: Path, name: str, kind: str) -> None:
    project, names = scaffold_plugin(name, kind, tmp_path / "project")
    name = names.name
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
    assert row["summary"] == default_summary(name, kind)
