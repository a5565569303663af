"""Schedules of component parameters in the recipe: each kind's values step by step (DINOv2's teacher
temperature warm-up against its official formula), validation errors, and the engine applying them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sslkit.engine.build import build_components
from sslkit.errors import RecipeError
from sslkit.recipe import load_recipe
from sslkit.recipe.param_schedule import ParamSchedule, parse_schedule

QUICKSTART = Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml"


def schedule(**spec: object) -> ParamSchedule:
    parsed, problems = parse_schedule(spec)
    assert parsed is not None, problems
    return parsed


@pytest.mark.parametrize("warmup", [12, 1, 0])
def test_linear_equals_the_official_teacher_temperature_warmup(warmup: int) -> None:
    # DINOv2: teacher_temp_schedule = concatenate(linspace(warmup_teacher_temp, teacher_temp, W), const teacher_temp)
    official = np.concatenate([np.linspace(0.04, 0.07, warmup), np.full(40, 0.07)])
    s = schedule(schedule="linear", start=0.04, end=0.07, length=warmup)
    for step in range(40):
        assert s.value(step, 1250, 1000) == pytest.approx(official[step], rel=1e-12), step


def test_epochs_scale_by_the_epoch_length_and_begin_delays() -> None:
    s = schedule(schedule="linear", start=0.0, end=1.0, length=2, begin=1, unit="epochs")
    values = [s.value(step, 5, 100) for step in range(25)]
    assert values[:5] == [0.0] * 5  # before begin = 1 epoch = step 5
    assert values[5] == 0.0 and values[14] == pytest.approx(1.0) and values[10] == pytest.approx(5 / 9)
    assert values[20] == 1.0


def test_cosine_runs_to_the_end_of_the_run_by_default() -> None:
    s = schedule(schedule="cosine", start=1.0, end=0.0)
    assert s.value(0, 10, 100) == 1.0
    assert s.value(50, 10, 100) == pytest.approx(0.5)
    assert s.value(100, 10, 100) == pytest.approx(0.0) and s.value(150, 10, 100) == pytest.approx(0.0)


def test_steps_switch_at_the_milestones() -> None:
    s = schedule(schedule="steps", values=[0.0, 2.0, 1.0], at=[10, 20])
    assert [s.value(step, 1, 100) for step in (0, 9, 10, 19, 20, 99)] == [0.0, 0.0, 2.0, 2.0, 1.0, 1.0]
    assert schedule(schedule="constant", value=3.0).value(7, 1, 10) == 3.0


@pytest.mark.parametrize(("spec", "message"), [
    ({"schedule": "linaer", "start": 0, "end": 1, "length": 3}, "did you mean 'linear'"),
    ({"schedule": "linear", "start": 0, "end": 1}, "needs 'length'"),
    ({"schedule": "linear", "start": 0, "end": 1, "length": 3, "lenght": 2}, "unknown key 'lenght'"),
    ({"schedule": "steps", "values": [0, 1], "at": [5, 6]}, "one milestone fewer"),
    ({"schedule": "steps", "values": [0, 1, 2], "at": [6, 5]}, "increasing"),
    ({"schedule": "linear", "start": "a", "end": 1, "length": 3}, "start must be a number"),
])
def test_malformed_schedules_are_explained(spec: dict[str, object], message: str) -> None:
    parsed, problems = parse_schedule(spec)
    assert parsed is None and any(message in p for p in problems), problems


def test_recipe_errors_name_the_key_and_check_bounds_of_every_value() -> None:
    with pytest.raises(RecipeError) as err:
        load_recipe(QUICKSTART, ["losses.dino.teacher_temp={schedule: linear, start: 0.04, end: -1, length: 3}"])
    assert "losses.dino.teacher_temp" in str(err.value) and "> 0.0" in str(err.value)
    with pytest.raises(RecipeError) as err:
        load_recipe(QUICKSTART, ["losses.dino.head={schedule: constant, value: 1}"])
    assert "only float parameters" in str(err.value)
    with pytest.raises(RecipeError) as err:
        load_recipe(QUICKSTART, ["teacher.temp=0.04"])
    assert "losses.<entry>.teacher_temp" in str(err.value)


def test_the_engine_writes_each_steps_value_into_the_component_and_the_weights() -> None:
    resolved = load_recipe(QUICKSTART, [
        "losses.dino.teacher_temp={schedule: linear, start: 0.04, end: 0.07, length: 4}",
        "losses.koleo.weight={schedule: steps, values: [0.0, 0.3], at: [2]}"])
    assert resolved.data["losses"]["dino"]["teacher_temp"]["schedule"] == "linear"  # saved as written
    parts = build_components(resolved)
    loss = parts.losses["dino"]
    assert loss.params.teacher_temp == pytest.approx(0.04) and parts.weights["koleo"] == 0.0
    parts.schedules.apply(3)
    assert loss.params.teacher_temp == pytest.approx(0.07) and parts.weights["koleo"] == 0.3
    assert parts.schedules.values(1) == {"losses.dino.teacher_temp": pytest.approx(0.05),
                                         "losses.koleo.weight": 0.0}
