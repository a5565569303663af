"""Third-party distributions: really installed (pip --target), discovered through entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sslkit.registry import load_registry

HERE = Path(__file__).parent
BROKEN_MODULE = "import sslkit_missing_dependency  # noqa: F401\n"
DUPLICATE_MODULE = textwrap.dedent('''
    """Registers a loss named like a built-in one."""
    from dataclasses import dataclass

    import sslkit


    @dataclass
    class Params:
        """No parameters."""


    @sslkit.hookimpl
    def register_losses(register):
        register("dino", object, Params, summary="a clashing loss")
''')


def _make_dist(root: Path, name: str, module: str, source: str) -> Path:
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text(textwrap.dedent(f'''
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{name}"
        version = "0.0.1"
        [project.entry-points.sslkit]
        {module} = "{module}"
        [tool.setuptools]
        py-modules = ["{module}"]
    '''))
    (root / f"{module}.py").write_text(source)
    return root


def _pip_install(source: Path, target: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(source)], check=True)


@pytest.fixture(scope="module")
def site_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three installed distributions, each in its own site directory."""
    base = tmp_path_factory.mktemp("dists")
    sources = {
        "good": HERE / "example_dist",
        "broken": _make_dist(base / "src-broken", "sslkit-broken-plugin", "sslkit_broken_plugin", BROKEN_MODULE),
        "duplicate": _make_dist(base / "src-dup", "sslkit-clashing-plugin", "sslkit_clashing_plugin",
                                DUPLICATE_MODULE),
    }
    sites = {}
    for key, source in sources.items():
        sites[key] = base / f"site-{key}"
        _pip_install(source, sites[key])
    return sites


def _sslkit(args: list[str], sites: list[Path], **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(str(s) for s in sites), **env}
    return subprocess.run([sys.executable, "-m", "sslkit", *args], capture_output=True, text=True, env=environment,
                          timeout=300)


def test_third_party_loss_is_listed_with_its_provider(site_dirs, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(site_dirs["good"]))
    registry = load_registry()
    component = registry.get("loss", "cosine_distill")
    assert component.provider.distribution == "sslkit-example-cosine"
    assert component.provider.version == "1.2.3"
    assert component.provider.module == "sslkit_example_cosine"
    assert component.summary.startswith("1 - cosine similarity")
    builtin = registry.get("loss", "dino")
    assert builtin.provider.distribution == "sslkit"


def test_cli_lists_plugins_as_json(site_dirs) -> None:
    result = _sslkit(["plugins", "--kind", "loss", "--json"], [site_dirs["good"]])
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["cosine_distill"]["provider"] == "sslkit-example-cosine"
    assert {"kind", "name", "provider", "summary"} <= set(rows["dino"])
    assert all(row["kind"] == "loss" for row in rows.values())


def test_third_party_loss_trains_in_a_recipe(site_dirs, tmp_path, write_recipe) -> None:
    recipe = write_recipe(textwrap.dedent("""
        base: %s
        losses:
          cosine: {name: cosine_distill, weight: 1.0, scale: 2.0}
        train: {max_steps: 2, checkpoint_every: 2, log_every: 1}
        eval: {at_end: false}
    """ % (Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml")))
    result = _sslkit(["train", str(recipe), "--output-dir", str(tmp_path / "run"), "data.num_workers=0"],
                     [site_dirs["good"]])
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["completed"] and summary["step"] == 2
    assert "loss/cosine" in summary
    versions = json.loads((tmp_path / "run" / "versions.json").read_text())
    assert versions["plugins"]["sslkit-example-cosine"] == "1.2.3"


def test_broken_plugin_is_reported_and_the_rest_still_load(site_dirs, monkeypatch, write_recipe) -> None:
    monkeypatch.syspath_prepend(str(site_dirs["broken"]))
    registry = load_registry()
    [failure] = registry.failures
    assert failure.entry_point == "sslkit:sslkit_broken_plugin = sslkit_broken_plugin"
    assert "ModuleNotFoundError" in failure.error and "sslkit_missing_dependency" in failure.error
    assert registry.get("loss", "dino").provider.distribution == "sslkit"
    result = _sslkit(["plugins"], [site_dirs["broken"]])
    assert result.returncode == 0
    assert "dino" in result.stdout
    assert "FAILED plugin sslkit:sslkit_broken_plugin" in result.stderr
    recipe = write_recipe("base: %s\nlosses:\n  extra: {name: from_broken_plugin}\n"
                          % (Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml"))
    check = _sslkit(["recipe", "check", str(recipe)], [site_dirs["broken"]])
    assert check.returncode == 1
    assert "unknown loss 'from_broken_plugin'" in check.stderr
    assert "plugin sslkit:sslkit_broken_plugin = sslkit_broken_plugin (from sslkit-broken-plugin 0.0.1) failed: " \
           "ModuleNotFoundError" in check.stderr


def test_duplicate_names_are_an_error_naming_both_providers(site_dirs, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(site_dirs["duplicate"]))
    registry = load_registry()
    with pytest.raises(Exception, match=r"loss 'dino' is registered by more than one provider: sslkit .* and "
                                        r"sslkit-clashing-plugin 0\.0\.1 \(sslkit_clashing_plugin\)"):
        registry.get("loss", "dino")
    result = _sslkit(["plugins", "--kind", "loss"], [site_dirs["duplicate"]])
    assert result.returncode == 1
    assert "CONFLICT loss 'dino' is registered by more than one provider" in result.stderr


def test_disabling_autoload_keeps_only_builtins(site_dirs, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(site_dirs["good"]))
    monkeypatch.syspath_prepend(str(site_dirs["broken"]))
    monkeypatch.setenv("SSLKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    registry = load_registry()
    assert not registry.failures
    assert "cosine_distill" not in registry.names("loss")
    assert "dino" in registry.names("loss")


def test_disabling_named_plugins(site_dirs, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(site_dirs["good"]))
    monkeypatch.syspath_prepend(str(site_dirs["duplicate"]))
    monkeypatch.setenv("SSLKIT_DISABLE_PLUGINS", "sslkit_clashing_plugin, sslkit-example-cosine")
    registry = load_registry()
    assert not registry.conflicts
    assert "cosine_distill" not in registry.names("loss")
    assert registry.get("loss", "dino").provider.distribution == "sslkit"
