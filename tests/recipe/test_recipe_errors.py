"""Bad recipes: every problem is reported with its file and line (or the command line), the
dotted key, what was expected and a close match, and the CLI exits non-zero without a traceback."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from sslkit.cli.main import main
from sslkit.errors import RecipeError, SSLKitError
from sslkit.params import param
from sslkit.recipe import load_recipe
from sslkit.testing.registry import registered

QUICKSTART = Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml"


def _recipe(write_recipe, body: str) -> Path:
    return write_recipe(f"base: {QUICKSTART}\n{body}")


def _error(path: Path, overrides: tuple[str, ...] = ()) -> str:
    with pytest.raises(SSLKitError) as info:
        load_recipe(path, overrides)
    return str(info.value)


@pytest.mark.parametrize(
    ("body", "line", "expected"),
    [
        # 1. unknown top-level section
        ("trian:\n  max_steps: 3\n", 2, "trian: unknown key (did you mean 'train'?)"),
        # 2. unknown nested key
        ("train:\n  max_step: 3\n", 3, "train.max_step: unknown key (did you mean 'max_steps'?)"),
        # 3. wrong type
        ("train:\n  max_steps: ten\n", 3, "train.max_steps: expected an integer, got 'ten' (str)"),
        # 4. out of range
        ("optim:\n  base_lr: -0.1\n", 3, "optim.base_lr: must be > 0.0, got -0.1"),
        # 5. not one of the choices
        ("run:\n  precision: fp8\n", 3, "run.precision: expected one of 'auto', 'fp32', 'bf16', 'fp16', got 'fp8'"),
        # 6. unknown plugin name
        ("losses:\n  dino:\n    name: dnio\n", 4, "unknown loss 'dnio' (did you mean 'dino'?); available:"),
        # 7. unknown plugin parameter
        ("model:\n  backbone:\n    sise: small\n", 4, "model.backbone.sise: unknown key (did you mean 'size'?)"),
        # 8. plugin parameter of the wrong type
        ("model:\n  backbone:\n    patch_size: [4]\n", 4, "model.backbone.patch_size: expected an integer"),
        # 9. a component without a name
        ("losses:\n  extra:\n    weight: 1.0\n", 3,
         "losses.extra.name: required: the name of a registered loss plugin"),
        # 10. a negative loss weight
        ("losses:\n  dino:\n    weight: -1\n", 4, "losses.dino.weight: expected a number >= 0, got -1"),
    ],
)
def test_bad_values_point_at_file_line_and_key(write_recipe, body: str, line: int, expected: str) -> None:
    path = _recipe(write_recipe, body)
    message = _error(path)
    assert expected in message
    assert f"{path}:{line}" in message


def test_all_problems_are_reported_together(write_recipe) -> None:
    path = _recipe(write_recipe, "train:\n  max_step: 3\n  log_every: 0\noptim:\n  base_lr: 0\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    keys = [p.key for p in info.value.problems]
    assert keys == ["train.max_step", "optim.base_lr", "train.log_every"] or set(keys) == {
        "train.max_step", "train.log_every", "optim.base_lr"}


@dataclass
class _ProbeParams:
    scale: float = param(1.0, "A parameter, so that the schema has a key of its own.")


def _allowed(message: str, key: str) -> list[str]:
    """The keys after "allowed:" in the message line about ``key``."""
    [line] = [line for line in message.splitlines() if f"{key}: unknown key" in line]
    return line.split("allowed: ")[1].split(", ")


@pytest.mark.parametrize(("kind", "section", "reserved"), [("loss", "losses.probe", {"name", "weight"}),
                                                           ("masker", "masking.masker", {"name"})])
def test_unknown_key_of_a_component_lists_and_suggests_its_reserved_keys(write_recipe, kind: str, section: str,
                                                                         reserved: set[str]) -> None:
    parent, child = section.split(".")
    path = _recipe(write_recipe, f"{parent}:\n  {child}:\n    name: probe\n    nmae: x\n    wieght: 1.0\n")
    with registered(kind, "probe", lambda params, ctx: None, _ProbeParams):
        message = _error(path)
    assert f"{section}.nmae: unknown key (did you mean 'name'?)" in message
    for typo in ("nmae", "wieght"):
        assert set(_allowed(message, f"{section}.{typo}")) == {"scale", *reserved}
    assert ("(did you mean 'weight'?)" in message) == ("weight" in reserved)


def test_override_errors_name_the_command_line(write_recipe) -> None:
    message = _error(QUICKSTART, ("train.max_steps=-5",))
    assert "command line (train.max_steps=-5): train.max_steps: must be >= 1, got -5" in message


def test_invalid_yaml_gives_the_line(write_recipe) -> None:
    path = write_recipe("train:\n  max_steps: 3\n bad: [\n")
    assert f"{path}:3: invalid YAML" in _error(path)


def test_unsafe_yaml_tags_are_refused(write_recipe) -> None:
    path = write_recipe("train: !!python/object/apply:os.system ['echo hacked']\n")
    assert "invalid YAML" in _error(path)


def test_duplicate_keys_are_refused(write_recipe) -> None:
    path = write_recipe("train:\n  max_steps: 3\n  max_steps: 4\n")
    assert f"{path}:3: duplicate key 'train.max_steps'" in _error(path)


def test_missing_base_and_missing_file(write_recipe, tmp_path) -> None:
    path = write_recipe("base: nowhere.yaml\n")
    assert "base recipe not found: nowhere.yaml" in _error(path)
    assert "recipe file not found" in _error(tmp_path / "absent.yaml")


def test_a_loss_naming_a_missing_head_fails_before_training(write_recipe, tmp_path, capsys) -> None:
    path = _recipe(write_recipe, "losses:\n  dino:\n    head: projector\n")
    code = main(["train", str(path), "--output-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 1
    assert f"{path}:3: losses.dino: loss 'dino' cannot be built:" in err
    assert "head 'projector'" in err and "['dino']" in err
    assert "Traceback" not in err


def test_cli_check_reports_and_exits_non_zero(write_recipe, capsys) -> None:
    path = _recipe(write_recipe, "train:\n  max_step: 3\n")
    assert main(["recipe", "check", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sslkit: error: invalid recipe")
    assert "did you mean 'max_steps'" in err


def test_show_prints_every_default_and_the_saved_recipe_round_trips(tmp_path, capsys) -> None:
    import yaml

    from sslkit.recipe import load_resolved

    assert main(["recipe", "show", str(QUICKSTART), "train.max_steps=7"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["train"]["max_steps"] == 7
    assert shown["optim"]["betas"] == [0.9, 0.999]
    assert shown["model"]["backbone"]["name"] == "vit" and "drop_path_rate" in shown["model"]["backbone"]
    again = load_resolved(shown, "shown")
    assert again.data == shown
