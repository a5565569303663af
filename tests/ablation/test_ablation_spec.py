"""Ablation files: validation with file/line errors, override forms and the composition order."""

from __future__ import annotations

from pathlib import Path

import pytest

from sslkit.ablation import load_ablation
from sslkit.errors import RecipeError, SSLKitError

QUICKSTART = Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml"
ABLATIONS = Path(__file__).resolve().parents[2] / "recipes" / "ablations"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ablation.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_problems_are_reported_together_with_file_and_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "recipe: missing.yaml\n"  # 1
        "overrides: {run.seed: 3}\n"  # 2
        "variants:\n"  # 3
        "  bad/name: {optim.base_lr: 0.1}\n"  # 4
        "  ok: [nonsense]\n"  # 5
        "seeds: [1, 1]\n",  # 6
    )
    with pytest.raises(RecipeError) as info:
        load_ablation(path, ["run.name=x"])
    problems = {p.key: str(p) for p in info.value.problems}
    assert f"{path}:1" in problems["recipe"] and "base recipe not found" in problems["recipe"]
    assert f"{path}:2" in problems["overrides"] and "run.seed" in problems["overrides"]
    assert f"{path}:4" in problems["variants.bad/name"]
    assert f"{path}:5" in problems["variants.ok[0]"] and "KEY=VALUE" in problems["variants.ok[0]"]
    assert f"{path}:6" in problems["seeds"]
    assert "command line (run.name=x)" in problems["run.name"]


def test_schema_problems_name_the_key_and_suggest(tmp_path: Path) -> None:
    path = _write(tmp_path, f"recipe: {QUICKSTART}\nvariants: {{a: null}}\neval:\n  knn: true\n  linar: true\n")
    with pytest.raises(RecipeError, match=rf"{path}:5: eval.linar: unknown key \(did you mean 'linear'\?\)"):
        load_ablation(path)


def test_a_command_line_override_may_not_erase_a_variant_difference(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f"recipe: {QUICKSTART}\nvariants:\n  a: {{masking.masker.name: block}}\n"
        "  b: {masking.masker.name: bernoulli}\n",
    )
    with pytest.raises(RecipeError, match=r"would override variant a's masking\.masker\.name"):
        load_ablation(path, ["masking.masker={name: block}"])
    assert len(load_ablation(path, ["masking.crop_policy.fraction=1.0"]).command_line) == 1


def test_layers_compose_in_order_and_seeds_and_names_are_set(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f"recipe: {QUICKSTART}\n"
        "overrides: {optim.base_lr: 0.01, train.max_steps: 7, data.batch_size: 16}\n"
        "variants:\n"
        "  mapping: {optim.base_lr: 0.002, teacher.momentum: 0.9}\n"  # line 4
        "  strings: ['optim.base_lr=0.002', 'teacher.momentum=0.9']\n"
        "  plain: null\n"
        "seeds: [3, 5]\n",
    )
    ablation = load_ablation(path, ["train.max_steps=9"])
    mapping, strings, plain = ablation.variants
    a = ablation.compose(mapping, 5)
    b = ablation.compose(strings, 5)
    assert a.data == {**b.data, "run": {**b.data["run"], "name": "mapping"}}
    assert a.recipe.optim.base_lr == 0.002  # variant above the file's overrides
    assert a.recipe.train.max_steps == 9  # command line on top
    assert a.recipe.data.batch_size == 16
    assert (a.recipe.run.seed, a.recipe.run.name) == (5, "mapping")
    assert a.locations["optim.base_lr"] == f"{path}:4"
    base = ablation.compose(plain, 3)
    assert base.recipe.optim.base_lr == 0.01 and base.recipe.teacher.momentum == 0.99  # quickstart's value
    assert ablation.variant("plain") is plain
    with pytest.raises(SSLKitError, match="no variant 'nope'"):
        ablation.variant("nope")


def test_recipe_problems_of_every_variant_point_at_the_ablation_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f"recipe: {QUICKSTART}\nvariants:\n"
        "  one: {optim.base_lrr: 0.1}\n"  # line 3
        "  two: {masking.masker.name: blok}\n",  # line 4
    )
    with pytest.raises(RecipeError) as info:
        load_ablation(path).compose_all()
    text = str(info.value)
    assert f"{path}:3: optim.base_lrr: unknown key (did you mean 'base_lr'?)" in text
    assert f"{path}:4: masking.masker.name" in text and "block" in text


def test_knn_needs_the_recipe_eval_pair(tmp_path: Path) -> None:
    path = _write(tmp_path, f"recipe: {QUICKSTART}\nvariants: {{a: null}}\noverrides: {{eval.train_data: null}}\n")
    with pytest.raises(SSLKitError, match=r"eval\.train_data and eval\.test_data"):
        load_ablation(path).compose_all()
    path.write_text(path.read_text() + "eval: {knn: false}\n")
    assert len(load_ablation(path).compose_all()) == 2  # two default seeds


@pytest.mark.parametrize("ablation_file", sorted(ABLATIONS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_ablations_resolve_and_each_pair_differs_only_in_what_it_names(ablation_file: Path) -> None:
    ablation = load_ablation(ablation_file)
    assert len(ablation.variants) == 2
    first, second = (ablation.compose(v, ablation.seeds[0]) for v in ablation.variants)
    keys = {o.key for v in ablation.variants for o in v.overrides}
    # renaming a component replaces its whole entry: every parameter of it may differ
    keys |= {key.removesuffix(".name") for key in keys if key.endswith(".name")}

    def flat(data: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in data.items():
            key = f"{prefix}.{k}" if prefix else k
            out.update(flat(v, key) if isinstance(v, dict) and v else {key: v})
        return out

    a, b = flat(first.data), flat(second.data)
    differing = {k for k in set(a) | set(b) if a.get(k) != b.get(k)} - {"run.name"}
    assert differing, "the two variants resolve to the same recipe"
    assert all(any(k == key or k.startswith(key + ".") for key in keys) for k in differing), differing
