"""The generated reference pages are current, and every parameter is documented."""

from __future__ import annotations

from pathlib import Path

from sslkit.reference import render_cli_reference, render_recipe_reference, undocumented

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference"
REGENERATE = "regenerate with: .venv/bin/python -m sslkit.reference docs/reference"


def test_every_parameter_and_component_is_documented() -> None:
    assert undocumented() == []


def test_recipe_reference_page_is_current() -> None:
    assert (REFERENCE / "recipe.md").read_text(encoding="utf-8") == render_recipe_reference(), REGENERATE


def test_cli_reference_page_is_current() -> None:
    assert (REFERENCE / "cli.md").read_text(encoding="utf-8") == render_cli_reference(), REGENERATE


def test_reference_lists_every_builtin_plugin_parameter() -> None:
    text = render_recipe_reference()
    for needle in ("## loss `ibot`", "## masker `block`", "`stratified`", "## backbone `vit`", "`drop_path_rate`",
                   "## `optim`", "`optim.base_lr`"):
        assert needle in text, needle
