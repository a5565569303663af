"""The ``sslkit`` pytest plugin: loaded through its entry point, cheap to import, fixtures usable
from a plugin author's own test suite (outside this repository)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_importing_the_plugin_and_the_kit_loads_no_torch() -> None:
    result = _python("import sys, sslkit.testing.pytest_plugin, sslkit.testing\n"
                     "print('torch' in sys.modules)\n"
                     "sslkit.testing.make_step_inputs\n"
                     "print('torch' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]


def test_a_plugin_authors_suite_gets_the_fixtures(tmp_path: Path) -> None:
    (tmp_path / "test_author.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass

        from sslkit.params import param
        from sslkit.registry import get_registry


        @dataclass
        class P:
            """Parameters."""

            ratio: float = param(0.5, "A ratio.", ge=0.0, le=1.0)


        class M:
            """A masker."""

            def __init__(self, params, ctx):
                self.params = params


        def test_register(sslkit_registry, tiny_recipe, tiny_training):
            sslkit_registry.register("masker", "author_masker", M, P)
            assert sslkit_registry.create("masker", "author_masker", ratio=0.25).params.ratio == 0.25
            assert tiny_recipe["model"]["backbone"]["name"] == "vit"
            assert callable(tiny_training)


        def test_restored():
            assert "author_masker" not in get_registry().names("masker")
    '''))
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_author.py"],
                            cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
