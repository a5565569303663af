"""The losses plugin registers every built-in loss with a documented, valid parameter schema."""

from __future__ import annotations

import dataclasses

from sslkit.components import BuildContext, Loss
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
    needs = {name: factory(validate(params, {}), ctx).needs for name, (factory, params, _) in registered.items()}
    assert needs["dino"].cls_head == "dino" and needs["dino"].local_crops
    assert needs["ibot"].masked_patch_head == "ibot" and needs["ibot"].masks
    assert needs["patch_prototype"].patch_tokens and needs["patch_prototype"].masks
