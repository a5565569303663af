"""The losses plugin registers every built-in loss with a documented, valid parameter schema."""

from __future__ import annotations

import dataclasses

from sslkit.components import BuildContext, Loss, Output
from sslkit.params import field_doc, validate
from sslkit_plugins.losses import register_losses


def test_every_loss_is_registered_documented_and_buildable() -> None:
    registered = {}
    register_losses(lambda name, factory, params, summary=None: registered.update({name: (factory, params, summary)}))
    assert set(registered) == {"dino", "ibot", "koleo", "patch_prototype"}
    ctx = BuildContext(embed_dim=8, head_dims={"dino": 16, "ibot": 16})
    for name, (factory, params, summary) in registered.items():
        assert summary and factory.__doc__, name
        assert all(field_doc(f) for f in dataclasses.fields(params)), name
        loss = factory(validate(params, {}), ctx)
        assert isinstance(loss, Loss), name
    inputs = {name: factory(validate(params, {}), ctx).inputs for name, (factory, params, _) in registered.items()}
    assert inputs["dino"]["student"] == Output("cls", crops="all", heads=("dino",))
    assert inputs["ibot"]["teacher"] == Output("patches", model="teacher", positions="masked", heads=("ibot",))
    assert inputs["ibot"]["masks"] == inputs["patch_prototype"]["masks"] == Output("masks")
    assert inputs["koleo"] == {"student": Output("cls")}
    teacher_temps = {name: validate(params, {}).teacher_temp for name, (_, params, _) in registered.items()
                     if name != "koleo"}
    assert teacher_temps == {"dino": 0.07, "ibot": 0.07, "patch_prototype": 0.07}  # DINOv2's value after warm-up
