"""Recipe layers: base inheritance at any depth, merge rules, overrides and locations."""

from __future__ import annotations

import pytest

from sslkit.errors import SSLKitError
from sslkit.recipe.compose import apply_overrides, load_layers, merge
from sslkit.recipe.source import parse_override


def test_merge_is_deep_and_does_not_modify_inputs() -> None:
    base = {"a": {"b": 1, "c": 2}, "d": [1, 2]}
    top = {"a": {"c": 3}, "d": [9]}
    assert merge(base, top) == {"a": {"b": 1, "c": 3}, "d": [9]}
    assert base == {"a": {"b": 1, "c": 2}, "d": [1, 2]}


def test_component_with_a_new_name_replaces_the_old_parameters() -> None:
    base = {"masking": {"masker": {"name": "block", "min_ratio": 0.1}}}
    top = {"masking": {"masker": {"name": "bernoulli", "ratio": 0.3}}}
    assert merge(base, top)["masking"]["masker"] == {"name": "bernoulli", "ratio": 0.3}
    same = merge(base, {"masking": {"masker": {"name": "block", "max_ratio": 0.4}}})
    assert same["masking"]["masker"] == {"name": "block", "min_ratio": 0.1, "max_ratio": 0.4}


def test_null_removes_losses_and_heads_only() -> None:
    base = {"losses": {"dino": {"name": "dino"}, "ibot": {"name": "ibot"}}, "run": {"name": "x"}}
    merged = merge(base, {"losses": {"ibot": None}, "run": {"name": None}})
    assert merged == {"losses": {"dino": {"name": "dino"}}, "run": {"name": None}}


def test_bases_at_any_depth_relative_to_each_file(write_recipe) -> None:
    write_recipe("train:\n  max_steps: 10\n  log_every: 1\n", "common/root.yaml")
    write_recipe("base: root.yaml\ntrain:\n  max_steps: 20\n", "common/middle.yaml")
    leaf = write_recipe("base: [common/middle.yaml]\ntrain:\n  checkpoint_every: 5\n", "leaf.yaml")
    data, locations = load_layers(leaf)
    assert data == {"train": {"max_steps": 20, "log_every": 1, "checkpoint_every": 5}}
    assert locations["train.max_steps"].endswith("middle.yaml:3")
    assert locations["train.log_every"].endswith("root.yaml:3")
    assert locations["train.checkpoint_every"].endswith("leaf.yaml:3")


def test_several_bases_merge_in_order(write_recipe) -> None:
    write_recipe("run:\n  seed: 1\n  name: a\n", "a.yaml")
    write_recipe("run:\n  seed: 2\n", "b.yaml")
    data, _ = load_layers(write_recipe("base: [a.yaml, b.yaml]\n"))
    assert data == {"run": {"seed": 2, "name": "a"}}


def test_cycles_are_detected(write_recipe) -> None:
    write_recipe("base: b.yaml\n", "a.yaml")
    path = write_recipe("base: a.yaml\n", "b.yaml")
    with pytest.raises(SSLKitError, match=r"inheritance cycle: .*b\.yaml -> .*a\.yaml -> .*b\.yaml"):
        load_layers(path)


def test_overrides_parse_yaml_values_and_record_their_origin() -> None:
    locations: dict[str, str] = {}
    data = apply_overrides({"train": {"max_steps": 5}}, locations,
                           ["train.max_steps=7", "optim.betas=[0.8, 0.9]", "run.name=null", "losses.k={name: koleo}"])
    assert data == {"train": {"max_steps": 7}, "optim": {"betas": [0.8, 0.9]}, "run": {"name": None},
                    "losses": {"k": {"name": "koleo"}}}
    assert locations["train.max_steps"] == "command line (train.max_steps=7)"


@pytest.mark.parametrize("text", ["train.max_steps", "=3", "train..x=1", "a-b=1"])
def test_malformed_overrides_are_rejected(text: str) -> None:
    with pytest.raises(SSLKitError, match="override"):
        parse_override(text)


def test_scientific_notation_is_a_number_in_files_and_overrides(write_recipe) -> None:
    data, _ = load_layers(write_recipe("optim:\n  min_lr: 1e-6\n  base_lr: 4.0E-3\n"))
    assert data == {"optim": {"min_lr": 1e-6, "base_lr": 4e-3}}
    assert parse_override("optim.base_lr=1e-4") == ("optim.base_lr", 1e-4)
    assert parse_override("run.name=1e4x") == ("run.name", "1e4x")
