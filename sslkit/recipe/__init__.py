"""Recipes: YAML files composed from layers (defaults, ``base:``, the file, ``KEY=VALUE``) and
validated strictly against the core schema and every plugin's parameter schema."""

from sslkit.recipe.validate import ComponentSpec, ResolvedRecipe, load_recipe, load_resolved

__all__ = ["ComponentSpec", "ResolvedRecipe", "load_recipe", "load_resolved"]
